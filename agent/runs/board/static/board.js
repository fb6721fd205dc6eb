// The run board: load the runs, render a column per run, follow changes through server-sent events.
'use strict';

const board = {
  runs: [], writable: false, data: {}, shown: new Set(), selected: {}, details: {}, drafts: {}, open: {},
  zoom: {}, deadlines: {}, loading: {}, again: {},
};

function readOnlyNote() {
  return board.serverWritable ? 'read-only here: open the URL with ?token=… that the board printed'
    : 'read-only board: start it with --token to give feedback';
}

async function start() {
  const listing = await api('/api/runs');
  board.runs = listing.runs;
  board.serverWritable = listing.writable;
  board.writable = listing.writable && Boolean(boardToken());
  board.runs.forEach((r) => board.shown.add(r.id));
  document.getElementById('access').textContent = board.writable ? 'feedback enabled' : readOnlyNote();
  renderPicker();
  await Promise.all(board.runs.map((r) => refresh(r.id)));
  connect();
  setInterval(tick, 1000);
}

function renderPicker() {
  const picker = document.getElementById('run-picker');
  picker.replaceChildren(...board.runs.map((r) => {
    const box = el('input', {type: 'checkbox', dataset: {run: r.id}, onchange: () => {
      box.checked ? board.shown.add(r.id) : board.shown.delete(r.id);
      layout();
    }});
    box.checked = board.shown.has(r.id);
    return el('label', {}, box, ' ', r.name);
  }));
  layout();
}

function layout() {
  const main = document.getElementById('runs');
  main.style.setProperty('--columns', Math.max(1, board.shown.size));
  for (const r of board.runs) {
    let column = main.querySelector(`section.run[data-run="${CSS.escape(r.id)}"]`);
    if (!column) {
      column = el('section', {class: 'run', dataset: {run: r.id}}, el('h2', {}, r.name), el('div', {class: 'sub'}, 'loading…'));
      main.append(column);
    }
    column.hidden = !board.shown.has(r.id);
  }
}

async function refresh(id) {
  if (board.loading[id]) { board.again[id] = true; return; }
  board.loading[id] = true;
  try {
    const run = await api(`/api/runs/${encodeURIComponent(id)}`);
    const now = Date.now();
    for (const v of run.stages) {
      if (v.waiting) board.deadlines[`waiting:${id}:${v.stage}`] = now + v.waiting.remaining_s * 1000;
      if (v.approval) board.deadlines[`approval:${id}:${v.stage}`] = now + v.approval.remaining_s * 1000;
    }
    board.data[id] = run;
    renderRun(id);
  } catch (err) {
    const column = document.querySelector(`section.run[data-run="${CSS.escape(id)}"] .sub`);
    if (column) column.textContent = `could not load: ${err.message}`;
  } finally {
    board.loading[id] = false;
    if (board.again[id]) { board.again[id] = false; refresh(id); }
  }
}

// A stage's detail (prompts, answers) is fetched when first opened, again when its record changes.
function loadDetail(id, view) {
  const key = `${id}:${view.stage}:${view.iteration}:${view.decided_by}:${view.approval ? 'proposal' : 'record'}`;
  if (!board.details[key]) {
    board.details[key] = api(`/api/runs/${encodeURIComponent(id)}/stages/${view.stage}`);
    board.details[key].catch(() => { delete board.details[key]; });
  }
  return board.details[key];
}

function weightCharts(run, records) {
  if (!records.length) return [];
  const names = Object.keys(records[0].weights_before);
  const series = names.map((name) => {
    const points = [[records[0].iteration, records[0].weights_before[name]]];
    for (const r of records) {
      if (!r.weights_after) continue;
      points.push([r.applied_iteration ?? r.iteration, r.weights_after[name]]);
    }
    return {name, points, step: true};
  });
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v > 0);
  const log = values.length > 0 && Math.max(...values) / Math.min(...values) >= 50;
  return [lineChart({key: `${run.id}:weights`, title: `loss weights${log ? ' (log)' : ''}`, series, log})];
}

function scoreCharts(run, records) {
  const experts = records.length ? (records[records.length - 1].experts || []).filter((e) => e.kind !== 'text') : [];
  return experts.map((e) => {
    const points = [];
    const band = [];
    for (const r of records) {
      const values = ((r.scores || {})[e.name] || []).filter((v) => typeof v === 'number');
      if (!values.length) continue;
      points.push([r.iteration, r.mean_scores[e.name]]);
      band.push([r.iteration, Math.min(...values), Math.max(...values)]);
    }
    return lineChart({key: `${run.id}:score:${e.name}`, series: [{name: 'mean', points, band}],
      title: `${e.name} ${e.lower_better ? '↓ lower' : '↑ higher'} is better (band: min..max)`});
  });
}

function stageStrip(run, stages, current) {
  const follow = el('input', {type: 'checkbox', class: 'follow', onchange: () => {
    board.selected[run.id] = follow.checked ? null : current.stage;
    renderRun(run.id);
  }});
  follow.checked = board.selected[run.id] === null || board.selected[run.id] === undefined;
  return el('div', {class: 'strip'}, 'stage ', stages.map((v) => el('button', {
    class: ['stage-button', v.stage === current.stage && 'selected', v.fallback && 'fallback',
      (v.waiting || v.approval) && 'pending'].filter(Boolean).join(' '),
    dataset: {stage: v.stage}, title: v.fallback ? `kept: ${v.fallback}` : `iteration ${v.iteration ?? '…'}`,
    onclick: () => { board.selected[run.id] = v.stage === stages[stages.length - 1].stage ? null : v.stage; renderRun(run.id); },
  }, String(v.stage))), el('label', {}, follow, ' follow the newest stage'));
}

function nextFeedback(run, stages) {
  const last = stages.length ? stages[stages.length - 1] : null;
  const hasText = last && (last.experts || []).some((e) => e.kind === 'text');
  if (!board.writable || !hasText || last.waiting) return null;
  const next = last.stage + 1;
  return el('details', {class: 'next-feedback'}, el('summary', {}, `Feedback for the next stage (${next})`),
    feedbackBox(run, next, [], `Read when stage ${next} is scored`, null));
}

function renderRun(id) {
  const run = board.data[id];
  const column = document.querySelector(`section.run[data-run="${CSS.escape(id)}"]`);
  if (!run || !column) return;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  const stages = run.stages;
  const records = stages.filter((v) => v.weights_before && !v.approval);
  const chosen = board.selected[id];
  const current = stages.find((v) => v.stage === chosen) || stages[stages.length - 1];
  const prevIndex = current ? stages.indexOf(current) - 1 : -1;
  const prev = prevIndex >= 0 ? stages[prevIndex] : null;
  const last = records[records.length - 1];
  const pending = stages.filter((v) => v.waiting || v.approval).map((v) => `stage ${v.stage} waits for you`);
  const facts = [`${records.length} stage${records.length === 1 ? '' : 's'} recorded`,
    last && `iteration ${last.iteration}`, last && last.policy !== 'initial' && `policy ${last.policy}`, ...pending];
  column.replaceChildren(...[
    el('h2', {}, run.name), el('div', {class: 'sub'}, facts.filter(Boolean).join(' · ')),
    el('div', {class: 'charts'}, weightCharts(run, records), scoreCharts(run, records)),
    current ? stageStrip(run, stages, current) : el('p', {class: 'sub'}, 'no stage yet: the run writes stage 0 before training'),
    current ? stageView(run, current, prev) : null,
    nextFeedback(run, stages)].filter(Boolean));
  if (focused) {
    const again = column.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function tick() {
  document.querySelectorAll('.countdown[data-deadline]').forEach((node) => {
    node.textContent = `${Math.max(0, Math.ceil((Number(node.dataset.deadline) - Date.now()) / 1000))} s`;
  });
}

function connect() {
  const live = document.getElementById('live');
  const source = new EventSource('/api/events');
  source.onopen = () => { live.className = 'live on'; live.textContent = 'live'; };
  source.onerror = () => { live.className = 'live off'; live.textContent = 'reconnecting…'; };
  source.addEventListener('change', (event) => {
    JSON.parse(event.data).runs.forEach((id) => refresh(id));
  });
}

document.addEventListener('DOMContentLoaded', () => {
  start().catch((err) => { document.getElementById('runs').textContent = `could not load the board: ${err.message}`; });
});
