# ruff: noqa: E501  (the page is HTML and JavaScript, not Python)
"""The playground's one page. Kept in Python so it ships inside the package with no package-data setup.

It draws what the bot posted the way Slack would: mrkdwn (bold, italics, code, quotes, links, mentions),
the Block Kit blocks the bot uses (section, context, actions with buttons, image, header, divider) and
uploaded images, threads under their first message, edits (the streamed answer) in place, and notes only
you can see (a command's reply, an ephemeral message). With [scopes] configured, two pickers choose the
channel to ask in and the person to ask as (from /state's `channels` and `people`): the left pane shows
that channel, the right pane that person's DM. Without scopes there is one of each, and no pickers. Everything is built from DOM text nodes, never
innerHTML: what the page shows is exactly the text Slack would get, and nothing in it can run as script.
tests/bot/test_playground_browser.py drives it in headless Chromium.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>expertbot playground</title><link rel="icon" href="data:,">
<style>
 body{font:15px/1.46 Lato,system-ui,sans-serif;margin:0;background:#f8f8f8;color:#1d1c1d}
 header{background:#3f0e40;color:#fff;padding:10px 16px} header small{opacity:.85}
 #banner{display:none;background:#fff4d6;border-bottom:1px solid #e8c66b;padding:8px 16px}
 #banner.error{background:#fde8e8;border-color:#e0a0a0}
 form{display:flex;gap:6px;padding:10px 12px 4px;align-items:center} form input{flex:1;padding:7px;font-size:15px} form button{padding:6px 14px}
 form label{font-size:13px;color:#616061} form label[hidden]{display:none}
 #replying{font-size:13px;color:#616061;padding:0 12px;min-height:18px}
 main{display:flex;gap:12px;padding:8px 12px 12px} section.pane{flex:1;background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px 10px;min-height:60vh}
 h2{font-size:15px;margin:0 0 6px}
 .msg{padding:6px 4px;border-top:1px solid #f0f0f0} .who{font-weight:700;margin-right:6px}
 .app{font-size:10px;background:#e8e8e8;color:#555;border-radius:2px;padding:0 3px;margin-right:6px}
 .time{font-size:12px;color:#888} .body{white-space:pre-wrap;word-wrap:break-word}
 .ctx{color:#616061;font-size:13px;margin-top:2px} .ctx img{width:16px;height:16px;vertical-align:middle}
 .thread{margin-left:26px;border-left:3px solid #ddd;padding-left:8px}
 .note{background:#f4f4ff} .note .label{color:#616061;font-size:12px;font-style:italic;display:block}
 blockquote{margin:2px 0;padding-left:8px;border-left:4px solid #ddd;color:#454245}
 code{background:#f4f4f4;border:1px solid #e2e2e2;border-radius:3px;padding:0 3px;font-size:13px;color:#c0186a}
 pre{background:#f4f4f4;border:1px solid #e2e2e2;border-radius:4px;padding:6px;margin:2px 0;white-space:pre-wrap}
 .actions button{margin:4px 6px 0 0;padding:2px 10px;font-size:15px;cursor:pointer;background:#fff;border:1px solid #bbb;border-radius:4px}
 img.upload,img.block{max-width:420px;display:block;margin-top:4px} .hdr{font-weight:700;font-size:17px}
 .reply{font-size:12px;margin-left:8px} .mention{background:#e8f5fa;color:#1264a3;border-radius:3px;padding:0 2px}
</style></head><body>
<header><b>expertbot playground</b> <small>the real bot and its handlers, talking to a local stand-in for Slack.
Ask in a channel (a mention) or in the DM; type <code>/reindex</code> or <code>/retrain-adapter</code> (you are an admin here).
<span id="scopes-hint" hidden>Pick the person to ask as and the channel, to try the <code>[scopes]</code> rules (only “you” is an admin).</span></small></header>
<div id="banner"></div>
<form id="f"><label id="as" hidden>as <select id="person"></select></label>
<label id="in" hidden>in <select id="channel"></select></label>
<select id="where"><option value="mention">@expertbot in #general</option>
<option value="message">#general, no mention</option><option value="dm">DM with expertbot</option></select>
<input type="text" id="text" placeholder="Ask a question, e.g. How long does the Quillmate pairing last? — or /reindex status" autofocus>
<button id="send">Send</button></form>
<div id="replying"></div>
<main><section class="pane"><h2 id="channel-title"># general</h2><div id="general"></div></section>
<section class="pane"><h2 id="dm-title">DM with expertbot</h2><div id="dm"></div></section></main>
<script>
"use strict";
const COMMANDS = ["/reindex", "/retrain-adapter"];
let state = null, shown = "", thread = null, problem = "";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; }
function unescapeSlack(s) { return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"); }
function who(id) { const p = (state.people || []).find((q) => q.id === id);
  return id === state.bot ? "expertbot" : p ? p.name : id === state.user ? "you" : id; }
// Where the page asks now: the picked channel, and the picked person (who also has the DM on the right).
function person() { return (state.people || []).find((p) => p.id === $("person").value) || {id: state.user, name: "you", dm: state.dm}; }
function channel() { return $("channel").value || state.channel; }
function channelName(id) { const c = (state.channels || []).find((c) => c.id === id); return c ? c.label.split(" (")[0] : "#" + id; }

// mrkdwn: ```code```, > quotes (sent escaped as &gt;), then inline `code`, *bold*, _italic_, ~strike~, <links>
const INLINE = /`([^`\n]+)`|<([^<>\n]+)>|(?<![\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])|(?<![\w_])_(?!\s)([^_\n]+?)_(?![\w_])|(?<![\w~])~(?!\s)([^~\n]+?)~(?![\w~])/g;
function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {  // matchAll works on a copy: the recursion below is safe
    parent.append(unescapeSlack(text.slice(last, m.index))); last = m.index + m[0].length;
    if (m[1] !== undefined) parent.append(el("code", "", unescapeSlack(m[1])));
    else if (m[2] !== undefined) parent.append(link(m[2]));
    else { const e = el(m[3] !== undefined ? "b" : m[4] !== undefined ? "i" : "s"); inline(e, m[3] ?? m[4] ?? m[5]); parent.append(e); }
  }
  parent.append(unescapeSlack(text.slice(last)));
}
function link(inner) {
  const [target, label] = [inner.split("|")[0], inner.split("|").slice(1).join("|")];
  if (/^https?:\/\//.test(target)) { const a = el("a", "", unescapeSlack(label || target)); a.href = target.replace(/&amp;/g, "&"); a.target = "_blank"; a.rel = "noopener"; return a; }
  if (target.startsWith("@")) return el("span", "mention", "@" + who(target.slice(1)));
  if (target.startsWith("!")) return el("span", "mention", "@" + target.slice(1));
  if (target.startsWith("#")) return el("span", "mention", "#" + (label || target.slice(1)));
  return document.createTextNode(unescapeSlack(label || target));
}
function mrkdwn(text, tag) {
  const out = el(tag || "div", "body"), parts = text.split("```");
  parts.forEach((part, i) => {
    if (i % 2) { out.append(el("pre", "", unescapeSlack(part.replace(/^\n/, "")))); return; }
    let quote = null;
    part.split("\n").forEach((line, j, lines) => {
      const q = /^(&gt;|>) ?/.exec(line);
      if (q) { if (!quote) { quote = el("blockquote"); out.append(quote); } else quote.append("\n"); inline(quote, line.slice(q[0].length)); return; }
      quote = null; inline(out, line); if (j < lines.length - 1) out.append("\n");
    });
  });
  return out;
}
function textObject(t) { return t.type === "plain_text" ? el("div", "body", t.text) : mrkdwn(t.text); }
function image(url, alt, cls) { const img = el("img", cls); img.src = url; img.alt = alt || ""; return img; }
function button(e, m) {
  const b = el("button", "", e.text.text); b.dataset.action = e.action_id;
  b.onclick = () => post("/click", {action_id: e.action_id, value: e.value, channel: m.channel, ts: m.ts, thread_ts: m.thread_ts || null, user: person().id});
  return b;
}
function block(b, m) {
  if (b.type === "section") { const d = el("div"); if (b.text) d.append(textObject(b.text));
    (b.fields || []).forEach((f) => d.append(textObject(f)));
    if (b.accessory && b.accessory.type === "image") d.append(image(b.accessory.image_url, b.accessory.alt_text, "block"));
    if (b.accessory && b.accessory.type === "button") d.append(button(b.accessory, m)); return d; }
  if (b.type === "context") { const c = el("div", "ctx");
    b.elements.forEach((e, i) => { if (i) c.append("  ");
      c.append(e.type === "image" ? image(e.image_url, e.alt_text) : e.type === "plain_text" ? e.text : mrkdwn(e.text, "span")); });
    return c; }
  if (b.type === "actions") { const a = el("div", "actions"); b.elements.filter((e) => e.type === "button").forEach((e) => a.append(button(e, m))); return a; }
  if (b.type === "image") return image(b.image_url, b.alt_text, "block");
  if (b.type === "header") return el("div", "hdr", b.text.text);
  if (b.type === "divider") return el("hr");
  return el("div", "ctx", "[" + b.type + " block]");
}
function stamp(ts) { return new Date(parseFloat(ts) * 1000).toLocaleTimeString(); }
function render(m) {
  const div = el("div", "msg" + (m.note ? " note" : "")), bot = m.user === state.bot;
  if (m.note) div.append(el("span", "label", "Only visible to you" + (m.command ? " (" + m.command + ")" : "")));
  div.append(el("span", "who", m.note ? "expertbot" : who(m.user)));
  if (bot || m.note) div.append(el("span", "app", "APP"));
  div.append(el("span", "time", stamp(m.ts)));
  if (m.blocks && m.blocks.length) m.blocks.forEach((b) => div.append(block(b, m)));
  else if (m.text) div.append(mrkdwn(m.text));
  (m.files || []).forEach((f) => div.append(image("/files/" + f.id, f.title || f.name, "upload")));
  if (!m.note && !m.thread_ts) { const r = el("a", "reply", "reply in thread"); r.href = "#";
    r.onclick = (ev) => { ev.preventDefault(); thread = {ts: m.ts, channel: m.channel, dm: m.channel === person().dm};
      if ((($("where").value === "dm") !== thread.dm)) $("where").value = thread.dm ? "dm" : "mention";
      showThread(); $("text").focus(); }; div.querySelector(".time").after(r); }
  return div;
}
function showThread() {
  const box = $("replying"); box.replaceChildren();
  if (!thread) return;
  box.append("Replying in a thread (started " + stamp(thread.ts) + "). ");
  const x = el("a", "", "Back to the channel"); x.href = "#";
  x.onclick = (e) => { e.preventDefault(); thread = null; showThread(); }; box.append(x);
}
function pane(id, channel) {  // notes are shown only to the person they are for, as in Slack
  const mine = (n) => !n.user || n.user === person().id;
  const box = $(id), notes = state.notes.concat(state.ephemeral).filter(mine).map((n) => ({...n, note: true}));
  const all = state.messages.concat(notes).filter((m) => m.channel === channel).sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
  box.replaceChildren();
  for (const root of all.filter((m) => !m.thread_ts || (m.thread_ts === m.ts && !m.note))) {
    box.append(render(root));
    const replies = all.filter((m) => m.thread_ts === root.ts && m !== root);
    if (replies.length) { const t = el("div", "thread"); replies.forEach((r) => t.append(render(r))); box.append(t); }
  }
}
function banner() {
  const b = $("banner"), warming = state && !state.ready;
  b.className = problem ? "error" : ""; b.style.display = problem || warming ? "block" : "none";
  b.textContent = problem || "Warming up: loading the models so that answers come quickly. You can ask already; the first answer comes once they are loaded.";
}
async function post(path, body) {
  try { const r = await fetch(path, {method: "POST", body: JSON.stringify(body)});
    problem = r.ok ? "" : (await r.json()).error; } catch (e) { problem = "The playground is not running any more (it was stopped?)."; }
  await refresh();
}
async function refresh() {
  try { const text = await (await fetch("/state")).text(); state = JSON.parse(text);
    if (problem.startsWith("The playground is not")) problem = "";
    if (!$("person").options.length) pickers();
    if (text !== shown) { shown = text; pane("general", channel()); pane("dm", person().dm); }
  } catch (e) { problem = "The playground is not running any more (it was stopped?)."; }
  banner();
}
function pickers() {  // once, from the first state: the channels and people the playground knows
  for (const [id, items] of [["person", state.people || []], ["channel", state.channels || []]]) {
    items.forEach((i) => { const o = el("option", "", i.label); o.value = i.id; $(id).append(o); });
    $(id === "person" ? "as" : "in").hidden = items.length < 2;
  }
  $("scopes-hint").hidden = (state.channels || []).length < 2 && (state.people || []).length < 2;
  picked();
}
function picked() {  // the labels and panes follow the pickers; a thread elsewhere is left
  const name = channelName(channel()), p = person(), opts = $("where").options;
  opts[0].textContent = "@expertbot in " + name; opts[1].textContent = name + ", no mention";
  $("channel-title").textContent = name.replace(/^#/, "# ");
  $("dm-title").textContent = p.id === state.user ? "DM with expertbot" : "DM: " + p.name + " and expertbot";
  if (thread && thread.channel !== channel() && thread.channel !== p.dm) { thread = null; showThread(); }
  shown = ""; if (state) { pane("general", channel()); pane("dm", p.dm); }
}
$("person").onchange = picked; $("channel").onchange = picked;
$("f").onsubmit = async (ev) => {
  ev.preventDefault(); const where = $("where").value, text = $("text").value.trim(); if (!text) return;
  $("text").value = "";
  const word = text.split(/\s+/)[0], asked = {channel: channel(), user: person().id};
  if (word.startsWith("/")) { await post("/send", {kind: word, text: text.slice(word.length).trim(), where: where === "dm" ? "dm" : "general", ...asked}); return; }
  const inThread = thread && thread.channel === (where === "dm" ? person().dm : channel());
  await post("/send", {kind: where, text, thread_ts: inThread ? thread.ts : null, ...asked});
};
refresh(); setInterval(refresh, 500);
</script></body></html>
"""
