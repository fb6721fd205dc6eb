// One stage of a run: header, the human's part (feedback, approval), weights, scores, images, the LLM's words.
'use strict';

const ARROW = {true: '↓', false: '↑'};

function scoreExperts(view) { return (view.experts || []).filter((e) => e.kind !== 'text'); }
function textExperts(view) { return (view.experts || []).filter((e) => e.kind === 'text'); }

// +1 when `now` is better than `before` for this expert, -1 when worse, 0 otherwise.
function verdict(expert, before, now) {
  if (typeof before !== 'number' || typeof now !== 'number' || before === now) return 0;
  return (now < before) === Boolean(expert.lower_better) ? 1 : -1;
}
const VERDICT_CLASS = {1: 'better', '-1': 'worse', 0: null};

function stageHeader(view) {
  const facts = [];
  const decided = !view.approval && view.decided_by;  // a proposal's preview is not decided yet
  if (view.policy) facts.push(`policy ${view.policy}`);
  if (decided) facts.push(`decided by ${view.decided_by}`);
  if (view.approval) facts.push('waiting for a person to approve');
  if (view.waiting) facts.push(`waiting for feedback from ${view.waiting.expert}`);
  if (typeof view.eval_s === 'number') facts.push(`experts ${seconds(view.eval_s)}`);
  if (typeof view.latency_s === 'number') facts.push(`decision ${seconds(view.latency_s)}`);
  if (decided && view.applied_iteration !== undefined && view.policy !== 'initial') {
    facts.push(view.applied_iteration === null ? 'not applied: training ended' : `applied from iteration ${view.applied_iteration}`);
  }
  const title = view.iteration === undefined ? `Stage ${view.stage} · being evaluated` : `Stage ${view.stage} · iteration ${view.iteration}`;
  return [
    el('h3', {}, title),
    el('div', {class: 'sub'}, facts.join(' · ')),
    view.fallback ? el('div', {class: 'fallback-line'}, `kept the previous weights: ${view.fallback}`) : null,
    view.decided_by === 'human' && view.proposed_weights ? el('div', {class: 'human-line'},
      `a person reviewed the policy's proposal ${ratioText(view.proposed_weights)}`) : null,
    view.decided_by === 'timeout' ? el('div', {class: 'human-line'}, 'nobody answered the approval request in time: the proposal applied') : null,
  ];
}

function ratioText(weights) { return Object.entries(weights || {}).map(([n, v]) => `${n} ${fmt(v)}`).join(', '); }

function weightsTable(view) {
  if (!view.weights_before) return null;
  const after = view.approval ? view.approval.proposed : view.weights_after;
  const head = el('tr', {}, el('th', {}, 'loss'), el('th', {}, 'before'), el('th', {}, view.approval ? 'proposed' : 'after'));
  const rows = Object.keys(view.weights_before).map((name) => {
    const b = view.weights_before[name];
    const a = after ? after[name] : undefined;
    return el('tr', {}, el('td', {}, name), el('td', {}, fmt(b)),
      el('td', {class: a !== undefined && a !== b ? 'changed' : null}, a === undefined ? '…' : `→ ${fmt(a)}`));
  });
  return el('table', {class: 'weights'}, head, rows);
}

function scoresTable(view, prev) {
  const experts = scoreExperts(view);
  if (!experts.length || !view.mean_scores) return null;
  const head = el('tr', {}, el('th', {}, 'expert'), el('th', {}, prev ? `stage ${prev.stage}` : ''),
    el('th', {}, `stage ${view.stage}`), el('th', {}, 'change'));
  const rows = experts.map((e) => {
    const before = prev && prev.mean_scores ? prev.mean_scores[e.name] : null;
    const now = view.mean_scores[e.name];
    const v = verdict(e, before, now);
    const change = typeof before === 'number' && typeof now === 'number' ? `${now >= before ? '+' : ''}${fmt(now - before)}` : '';
    return el('tr', {}, el('td', {}, `${e.name} ${ARROW[Boolean(e.lower_better)]}`), el('td', {}, before === null ? '' : fmt(before)),
      el('td', {class: 'score-mean', dataset: {expert: e.name}}, fmt(now)), el('td', {class: VERDICT_CLASS[v]}, change));
  });
  return el('table', {class: 'scores'}, head, rows);
}

function imageScores(view, prev, i) {
  if (!view.scores) return null;
  const lines = scoreExperts(view).map((e) => {
    const now = (view.scores[e.name] || [])[i];
    const before = prev && prev.scores ? (prev.scores[e.name] || [])[i] : null;
    return el('div', {class: VERDICT_CLASS[verdict(e, before, now)]}, `${e.name}${ARROW[Boolean(e.lower_better)]} ${fmt(now)}`);
  });
  const texts = textExperts(view).map((e) => {
    const text = (view.scores[e.name] || [])[i];
    return typeof text === 'string' ? el('div', {class: 'text-score'}, `${e.name}: “${text}”`) : null;
  });
  return el('div', {class: 'scores'}, lines, texts);
}

// A zoomable frame: click cycles 1x / 2x / 4x for the whole row, the mouse moves the zoomed area.
function frame(url, label, zoomKey, extraClass) {
  if (!url) return el('div', {class: 'frame missing'}, `no ${label}`);
  const img = el('img', {src: url, alt: label, class: extraClass, loading: 'lazy'});
  const box = el('div', {class: 'frame', dataset: {zoomRow: zoomKey}, title: `${label}: click to zoom`}, img);
  applyZoom(img, board.zoom[zoomKey] || 1);
  box.addEventListener('click', () => {
    const level = {1: 2, 2: 4, 4: 1}[board.zoom[zoomKey] || 1];
    board.zoom[zoomKey] = level;
    document.querySelectorAll(`[data-zoom-row="${CSS.escape(zoomKey)}"] img`).forEach((other) => applyZoom(other, level));
  });
  box.addEventListener('mousemove', (event) => {
    const rect = box.getBoundingClientRect();
    const origin = `${((event.clientX - rect.left) / rect.width * 100).toFixed(1)}% ${((event.clientY - rect.top) / rect.height * 100).toFixed(1)}%`;
    document.querySelectorAll(`[data-zoom-row="${CSS.escape(zoomKey)}"] img`).forEach((other) => { other.style.transformOrigin = origin; });
  });
  return box;
}
function applyZoom(img, level) { img.style.transform = level > 1 ? `scale(${level})` : ''; }

function ratingInput(run, view, i) {
  const key = `rate:${run.id}:${view.stage}:${i}`;
  const choices = ['–', 1, 2, 3, 4, 5].map((value) => {
    const id = `${key}:${value}`;
    const input = el('input', {type: 'radio', name: key, id, value: value === '–' ? '' : value,
      class: 'rate', dataset: {image: i, key: id}, onchange: () => { board.drafts[key] = value === '–' ? null : value; }});
    input.checked = (board.drafts[key] ?? null) === (value === '–' ? null : value);
    return el('label', {for: id}, input, String(value));
  });
  return el('div', {class: 'rating', title: 'your rating of this restoration: 1 = bad, 5 = excellent'}, 'rate: ', choices);
}

function imagesGrid(run, view, prev) {
  const images = run.images.length ? run.images : (view.image_urls || []).map((_, i) => ({name: `image ${i + 1}`}));
  if (!images.length) return null;
  const hasLq = images.some((im) => im.lq);
  const hasGt = images.some((im) => im.gt);
  const columns = [hasLq && 'LQ (input)', hasGt && 'GT', prev && `stage ${prev.stage}`, `stage ${view.stage}`].filter(Boolean);
  const grid = el('div', {class: 'images'});
  grid.style.gridTemplateColumns = `repeat(${columns.length}, minmax(0, 220px))`;
  grid.append(...columns.map((c) => el('div', {class: 'head'}, c)));
  const rating = view.waiting && board.writable;
  images.forEach((im, i) => {
    const zoomKey = `${run.id}:${i}`;
    if (hasLq) grid.append(el('div', {class: 'cell'}, frame(im.lq, 'LQ', zoomKey), el('div', {class: 'name'}, im.name)));
    if (hasGt) grid.append(el('div', {class: 'cell'}, frame(im.gt, 'GT', zoomKey)));
    if (prev) grid.append(el('div', {class: 'cell'}, frame((prev.image_urls || [])[i], `stage ${prev.stage}`, zoomKey), imageScores(prev, null, i)));
    grid.append(el('div', {class: 'cell', dataset: {image: i}}, frame((view.image_urls || [])[i], `stage ${view.stage}`, zoomKey, 'restoration'),
      imageScores(view, prev, i), rating ? ratingInput(run, view, i) : null));
  });
  return grid;
}

function countdown(deadline) {
  return el('span', {class: 'countdown', dataset: {deadline}}, `${Math.max(0, Math.ceil((deadline - Date.now()) / 1000))} s`);
}

function textDraft(key, placeholder) {
  const area = el('textarea', {class: 'feedback-text', placeholder, dataset: {key}, maxlength: 4000});
  area.value = board.drafts[key] || '';
  area.addEventListener('input', () => { board.drafts[key] = area.value; });
  return area;
}

async function submit(button, status, request, onDone) {
  button.disabled = true;
  status.className = 'status';
  status.textContent = 'sending…';
  try {
    await request();
    status.textContent = 'sent: the run reads it now';
    if (onDone) onDone();
  } catch (err) {
    status.className = 'status error';
    status.textContent = err.message;
    button.disabled = false;
  }
}

function feedbackBox(run, stage, images, heading, deadline) {
  const key = `fb:${run.id}:${stage}`;
  const area = textDraft(key, 'What do you see? e.g. "too much ringing on the fur; keep the textures of the grass"');
  const status = el('span', {class: 'status'});
  const send = el('button', {class: 'send-feedback', disabled: !board.writable, onclick: () => submit(send, status, () => {
    const ratings = images.map((_, i) => board.drafts[`rate:${run.id}:${stage}:${i}`] ?? null);
    return api(`/api/runs/${run.id}/stages/${stage}/feedback`, {text: area.value, ratings});
  }, () => { delete board.drafts[key]; })}, 'Send to the agent');
  return el('div', {class: 'pending-box feedback-box', dataset: {stage}}, el('b', {}, heading), ' ',
    deadline ? ['· ', countdown(deadline), ' left'] : null, area,
    el('div', {class: 'row'}, send, status, board.writable ? null : el('span', {class: 'status'}, readOnlyNote())));
}

function approvalBox(run, view) {
  const proposed = view.approval.proposed;
  const status = el('span', {class: 'status'});
  const inputs = Object.entries(proposed).map(([name, value]) => {
    const key = `w:${run.id}:${view.stage}:${name}`;
    const input = el('input', {class: 'weight', type: 'number', step: 'any', min: 0, dataset: {loss: name, key}});
    input.value = board.drafts[key] ?? String(value);
    input.addEventListener('input', () => { board.drafts[key] = input.value; });
    return [name, input];
  });
  const rows = inputs.map(([name, input]) => el('tr', {}, el('td', {}, name), el('td', {}, fmt(view.weights_before[name])),
    el('td', {}, fmt(proposed[name])), el('td', {}, input)));
  const path = `/api/runs/${run.id}/stages/${view.stage}/approval`;
  const approve = el('button', {class: 'approve', disabled: !board.writable,
    onclick: () => submit(approve, status, () => api(path, {action: 'approve'}))}, 'Approve the proposal');
  const edit = el('button', {class: 'apply-edit', disabled: !board.writable, onclick: () => submit(edit, status,
    () => api(path, {action: 'edit', weights: Object.fromEntries(inputs.map(([n, input]) => [n, input.value]))}))},
  'Apply my weights');
  return el('div', {class: 'pending-box approval-box', dataset: {stage: view.stage}},
    el('b', {}, `The ${view.policy} policy proposes new weights: approve or edit them`), ' · applies by itself in ',
    countdown(board.deadlines[`approval:${run.id}:${view.stage}`]),
    el('table', {}, el('tr', {}, el('th', {}, 'loss'), el('th', {}, 'now'), el('th', {}, 'proposed'), el('th', {}, 'yours')), rows),
    el('div', {class: 'row'}, approve, edit, status, board.writable ? null : el('span', {class: 'status'}, readOnlyNote())));
}

function givenFeedback(view) {
  if (!view.feedback) return null;
  const ratings = (view.feedback.ratings || []).map((r, i) => (r === null ? null : `image ${i + 1}: ${r}/5`)).filter(Boolean);
  return el('div', {class: 'sub given-feedback'}, 'human feedback: ', view.feedback.text ? `“${view.feedback.text}”` : '',
    ratings.length ? ` ratings ${ratings.join(', ')}` : '');
}

// One line per distinct thought, with the images (prompts) that gave it.
function thoughtsList(view) {
  const byText = new Map();
  (view.thoughts || []).forEach((t, i) => {
    if (typeof t === 'string' && t.trim()) byText.set(t, (byText.get(t) || []).concat(i + 1));
  });
  if (!byText.size) return null;
  const label = (images) => (images.length === 1 ? `image ${images[0]}` : `images ${images.join(', ')}`);
  return el('div', {}, el('b', {}, 'The LLM’s thoughts'), el('ul', {class: 'thoughts'},
    [...byText].map(([t, images]) => el('li', {}, el('span', {class: 'sub'}, `${label(images)}: `), t))));
}

function llmDetails(run, view) {
  if (!view.policy || view.policy === 'initial') return null;
  const key = `${run.id}:${view.stage}`;
  const body = el('div', {class: 'llm-body'}, 'loading…');
  const box = el('details', {class: 'llm', dataset: {stage: view.stage}}, el('summary', {}, 'Prompts and raw answers'), body);
  const fill = (detail) => body.replaceChildren(...llmBody(detail).filter(Boolean));
  box.addEventListener('toggle', () => {
    board.open[key] = box.open;
    if (box.open) loadDetail(run.id, view).then(fill, (err) => body.replaceChildren(el('span', {class: 'status error'}, err.message)));
  });
  if (board.open[key]) { box.open = true; }
  return box;
}

function llmBody(detail) {
  const info = detail.info || {};
  const counts = ['ok', 'reprompted', 'recovered', 'failed', 'abandoned'].filter((k) => k in info).map((k) => `${k} ${info[k]}`);
  const perImage = (info.per_image || []).map((w, i) => el('tr', {}, el('td', {}, `image ${i + 1}`),
    el('td', {}, w ? ratioText(w) : '(unusable)'), el('td', {class: 'answer-error'}, (info.errors || [])[i] || '')));
  const answers = (detail.answers || []).map((a) => el('div', {}, el('div', {class: 'sub'},
    `image ${a.image === null ? 'all' : a.image + 1}, attempt ${a.attempt + 1}`),
  a.text !== null && a.text !== undefined ? el('pre', {class: 'answer'}, a.text) : null,
  a.error ? el('div', {class: 'answer-error'}, a.error) : null));
  const prompts = (detail.prompts || []).map((p) => el('details', {}, el('summary', {},
    `prompt: image ${p.image === null ? 'all' : p.image + 1}, attempt ${p.attempt + 1}`),
  (p.messages || []).map((m) => el('pre', {}, `[${m.role}]\n${typeof m.content === 'string' ? m.content : JSON.stringify(m.content, null, 1)}`))));
  return [
    counts.length || info.model ? el('div', {class: 'sub'}, [info.model && `model ${info.model}`, ...counts].filter(Boolean).join(' · ')) : null,
    perImage.length ? el('table', {}, el('tr', {}, el('th', {}, 'answer'), el('th', {}, 'weights'), el('th', {}, 'problem')), perImage) : null,
    answers.length ? el('div', {}, el('b', {}, 'Raw answers'), answers) : null,
    prompts.length ? el('div', {}, el('b', {}, 'Prompts'), prompts) : null,
    !answers.length && !prompts.length ? el('pre', {}, JSON.stringify(info, null, 1)) : null,
    detail.traceback ? el('pre', {class: 'answer-error'}, detail.traceback) : null,
  ];
}

function stageView(run, view, prev) {
  const images = run.images.length ? run.images : (view.image_urls || []);
  return el('div', {class: 'stage', dataset: {stage: view.stage}},
    stageHeader(view),
    view.waiting ? feedbackBox(run, view.stage, images, `Stage ${view.stage} waits for your feedback (${view.waiting.expert})`,
      board.deadlines[`waiting:${run.id}:${view.stage}`]) : null,
    view.approval ? approvalBox(run, view) : null,
    givenFeedback(view), weightsTable(view), scoresTable(view, prev), thoughtsList(view),
    imagesGrid(run, view, prev), llmDetails(run, view));
}
