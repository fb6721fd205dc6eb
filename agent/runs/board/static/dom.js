// Helpers shared by the board's scripts: building DOM nodes (text only, never HTML), numbers, the API.
'use strict';

// el('td', {class: 'x', onclick: f}, 'text', child): every string becomes a text node, so text
// from a run (an LLM's answer, a file name) can never become markup.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined || typeof value !== 'number' || !isFinite(value)) return 'n/a';
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

function seconds(value) {
  return typeof value === 'number' ? `${value.toFixed(value < 10 ? 2 : 1)} s` : 'n/a';
}

// The write token: taken from ?token=... once, kept for this tab only, removed from the address bar.
function boardToken() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get('token');
  if (given) {
    sessionStorage.setItem('lossagent-board-token', given);
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem('lossagent-board-token');
}
// dom.js loads without `defer`, so this runs while the page's head is parsed: the token has left the
// address bar before the page is drawn or anything else loads, however slow the rest is.
boardToken();

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: 'POST', body: JSON.stringify(body),
    headers: {'Content-Type': 'application/json', 'X-Board-Token': boardToken() || ''},
  };
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}
