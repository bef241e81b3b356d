// show-off OCR page: choose an image (or a PDF), scale it to <= 2048 px on its long side as JPEG, optionally pick a
// region, read it, draw the boxes over the image, and send corrections. No framework, no network beyond this service.
// A file the browser cannot draw (a PDF, a TIFF, HEIC) goes whole; the service draws its page (?preview=) and cuts a
// region picked on that from the page itself (?region=).
// 2048: a phone photo still goes as a sixth of its pixels, and small print keeps what the service reads it by. At
// 720 px high (the page's first rule) docs_dev receipts read F1 0.877 instead of 0.908 as they come, 9 pt letter
// pages 0.950 instead of 0.993; at 2048, 0.913 and 0.992 (python -m benchmarks.web_scale).
const MAX_SIDE = 2048;
// A tall strip (a whole web page's screenshot, a chat, a till roll) keeps up to 1159 px of its width instead: the
// service's detector reads it 960 px wide (up to 27136 high, in parts) rather than at 1696 high, and the page sends
// 2048 / 1696 of what it reads either way. Brought to 2048, a 1280 x 5000 screenshot's 16 px lines went as 6 px
// ones. Within what every browser can draw: 32767 px on a side, 16.7 MP in all (Safari on iOS); a 1280 x 20000
// screenshot goes as 1036 x 16191, which the detector still reads at 960 px wide.
const MIN_WIDTH = 1159, MAX_HEIGHT = 32767, MAX_AREA = 4096 * 4096;
const sendScale = (w, h) => Math.min(1, Math.sqrt(MAX_AREA / (w * h)), Math.max(MAX_SIDE / Math.max(w, h),
  h > w ? Math.min(MIN_WIDTH / w, MAX_HEIGHT / h) : 0));
const $ = (id) => document.getElementById(id);
const STAGE_TITLE = "2. Drag over the text you want (optional), then read it";
const state = { canvas: null, roi: null, result: null, drag: null, file: null, decoded: false, alpha: false, page: 1, sent: null,
  stored: [],  // the ids a download of every page stored its pages under, which "Delete stored copy" deletes too
  view: 1 };  // overlay units per canvas pixel: 1, or a page the service drew small: its pixels per preview pixel

// The key of a service that asks for one (it answers 401): kept for this tab only, sent with every API call.
function apiHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem("ocr-api-key", key);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function askForKey() {
  $("key-row").hidden = false;
  $("api-key").focus();
  return new Error("This service needs an API key: enter it beside “Read text” and press that again (HTTP 401)");
}

function setStatus(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.className = kind;
  $("stage").setAttribute("aria-busy", kind === "busy" ? "true" : "false");
}

function fmtBytes(n) {
  return n > 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${Math.round(n / 1e3)} kB`;
}

// A PDF or a TIFF may hold several pages, and a browser draws at most a TIFF's first: they go to the service as
// they are, which reads the page asked for and says how many there are.
const isPaged = (file) => ["image/tiff", "application/pdf"].includes(file.type) || /\.(tiff?|pdf)$/i.test(file.name || "");

async function loadFile(file) {
  state.file = file; state.roi = null; state.result = null; state.page = 1; state.view = 1;
  $("results").hidden = true; $("overlay").innerHTML = ""; $("clear-roi").disabled = true; $("roi-info").textContent = "";
  $("stage").hidden = false; $("pager").hidden = true; $("all-pages-row").hidden = true;
  setStatus("");
  let bitmap;
  try {
    if (isPaged(file)) throw new Error("sent as it is");
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    // the browser cannot decode it (or it is a PDF or TIFF): let the service read it, or say what is wrong with it
    state.decoded = false;
    $("canvas").classList.add("fixed");  // nothing to drag over until the service has drawn the page
    $("stage-title").textContent = "2. Read it (this file is sent whole; its page is drawn as the service read it)";
    $("prep").textContent = `${file.name || "pasted file"}: ${fmtBytes(file.size)} (sent as it is)`;
    const c = $("canvas"); c.width = 1; c.height = 1; delete c.dataset.page;
    return read();
  }
  const scale = sendScale(bitmap.width, bitmap.height);
  const c = $("canvas");
  c.width = Math.round(bitmap.width * scale); c.height = Math.round(bitmap.height * scale);
  const ctx = c.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, c.width, c.height);
  state.decoded = true;
  c.classList.remove("fixed");
  $("stage-title").textContent = STAGE_TITLE;
  state.alpha = hasTransparency(ctx, c.width, c.height);
  $("overlay").setAttribute("viewBox", `0 0 ${c.width} ${c.height}`);
  const sent = await encodeRegion(c, 0, 0, c.width, c.height);
  const saved = file.size - sent.size;
  $("prep").textContent = `${bitmap.width}×${bitmap.height} → ${c.width}×${c.height} ${state.alpha ? "PNG (transparent)" : "JPEG"}, ` +
    `${fmtBytes(file.size)} → ${fmtBytes(sent.size)} (${saved > 0 ? "saved " + fmtBytes(saved) : "no saving"})`;
}

function hasTransparency(ctx, w, h) {
  const px = ctx.getImageData(0, 0, w, h).data;
  for (let i = 3; i < px.length; i += 4) if (px[i] < 255) return true;
  return false;
}

// JPEG has no alpha: a browser turns transparent pixels black, which hides dark text. Transparent images go as
// PNG, and the service lays them over a background that contrasts with their ink.
function encodeRegion(src, x, y, w, h) {
  const out = document.createElement("canvas");
  out.width = w; out.height = h;
  out.getContext("2d").drawImage(src, x, y, w, h, 0, 0, w, h);
  return new Promise((resolve) => (state.alpha ? out.toBlob(resolve, "image/png") : out.toBlob(resolve, "image/jpeg", 0.9)));
}

async function read() {
  const region = state.roi || { x: 0, y: 0, w: $("canvas").width, h: $("canvas").height };
  const shown = !state.decoded && $("canvas").dataset.page === String(state.page);  // drawn by the service already
  let body, name = "upload";
  if (state.decoded) {
    body = await encodeRegion($("canvas"), region.x, region.y, region.w, region.h);
    name = state.alpha ? "image.png" : "image.jpg";
  } else {
    body = state.file;
    name = state.file.name || name;
  }
  const info = $("sent-info");
  info.textContent = state.decoded ? `sent ${region.w}×${region.h} px, ${fmtBytes(body.size)}`
    : `sent ${fmtBytes(body.size)}${state.roi ? `, the region ${regionSpec(state.roi)} of page ${state.page} asked for` : ""}`;
  info.dataset.width = state.decoded ? region.w : ""; info.dataset.height = state.decoded ? region.h : "";
  const form = new FormData();
  form.append("image", body, name);
  setStatus("Reading…", "busy");
  $("read").disabled = true;
  try {
    const params = new URLSearchParams();
    if ($("as-word").checked) params.set("layout", "word");
    if (state.page > 1) params.set("page", state.page);
    if ($("find-turn").checked) params.set("rotate", "auto");
    if ($("every-word").checked) params.set("min_confidence", "0");  // every reading; boxes show how sure
    if (!state.decoded && !shown) params.set("preview", MAX_SIDE);  // the page as the service read it, to draw on
    if (!state.decoded && state.roi) params.set("region", regionSpec(state.roi));  // in the page's pixels
    const query = params.toString();
    const url = query ? `api/v1/ocr?${query}` : "api/v1/ocr";
    // what a searchable PDF is made of: the same upload read the same way, under the same key, so that the service
    // stores it once, under the id that "Delete stored copy" deletes
    state.sent = { body, name, params, key: newId() };
    state.stored = [];
    const { r, data } = await sendAgainWhileBusy(url, { method: "POST", body: form, headers: { "Idempotency-Key": state.sent.key } });
    if (!r.ok) {
      const msg = data.error ? data.error.message : r.statusText;
      const hint = { 413: "Too large", 415: "Not an image we can read", 500: "The service failed, try again",
                     429: "Too many of your requests at once, try again", 503: "The service is busy, try again", 504: "No answer in time, try again" }[r.status];
      throw new Error(`${hint ? hint + ": " : ""}${msg} (HTTP ${r.status})`);
    }
    showResult(data, state.decoded ? region : { x: 0, y: 0 });  // the service's boxes are in the page's pixels
    if (!state.decoded && data.preview) showPreview(data.preview, data.image);
    showPages(data.image);
    const where = data.image.pages > 1 ? ` on page ${data.image.page} of ${data.image.pages}` : "";
    const turn = data.image.rotation ? `, read turned ${data.image.rotation}° clockwise` : "";
    setStatus(`Found ${data.lines.length} line${data.lines.length === 1 ? "" : "s"}${where}${turn}.`);
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    $("read").disabled = false;
  }
}

// What the page downloads besides JSON: the service's own writers (?format=), by label and file extension.
const FORMATS = { pdf: ["Searchable PDF", "pdf"], alto: ["ALTO XML", "xml"], hocr: ["hOCR", "hocr"], tsv: ["TSV table", "tsv"], text: ["Text", "txt"] };

// The upload read last, in the chosen format (?format=): read again the same way, under the upload's own
// Idempotency-Key (stored once, under the id the page deletes), the service's answer is the file. The page shows
// what it sent (a region, scaled), so that is what the file holds.
async function saveAs() {
  const format = $("save-format").value;
  const [label, extension] = FORMATS[format];
  const { body, name, params, key } = state.sent;
  const query = new URLSearchParams(params);
  query.set("format", format);
  query.delete("preview");  // a part of JSON answers only
  const every = !$("all-pages-row").hidden && $("all-pages").checked;  // one file of the whole document
  if (every) { query.delete("page"); query.delete("region"); query.set("pages", "all"); }  // every page whole
  const form = new FormData();
  form.append("image", body, name);
  setStatus(`Reading it again as ${label}…`, "busy");
  $("save-as").disabled = true;
  try {
    const { r, data } = await sendAgainWhileBusy(`api/v1/ocr?${query}`, { method: "POST", body: form, headers: { "Idempotency-Key": key } });
    if (!r.ok) throw new Error(`No ${label}: ${data.error ? data.error.message : r.statusText} (HTTP ${r.status})`);
    for (const id of (r.headers.get("X-Page-Request-Ids") || "").split(", ")) {
      if (id && !state.stored.includes(id)) state.stored.push(id);
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = `ocr-${state.result.request_id}${every ? "-all-pages" : ""}.${extension}`; a.click();
    setStatus(`${label} saved${every ? `, every page (${state.result.image.pages})` : ""}.`);
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    $("save-as").disabled = false;
  }
}

// Sends a request again while the service is busy (503, or 429 for this client's share of it, after its
// Retry-After, growing) or lost the replica
// holding it (Serve's proxy answers that with a 500 that is not our JSON), as serve_app.client does; a 4xx, a
// 504 after a minute's wait and our own JSON 500 come back at once.
async function sendAgainWhileBusy(url, init, say = (msg) => setStatus(msg, "busy"), tries = 5) {
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(url, { ...init, headers: apiHeaders(init.headers) });
    const json = (r.headers.get("content-type") || "").startsWith("application/json");
    const data = json ? await r.clone().json().catch(() => ({})) : {};  // a PDF's body stays to be read
    if (r.status === 401) throw askForKey();
    const again = r.status === 503 || r.status === 429 || r.status === 502 || (r.status === 500 && !data.error);
    if (!again || attempt === tries) return { r, data };
    const wait = Math.min(Math.max(Number(r.headers.get("Retry-After")) || 1, 2 ** (attempt - 1)), 10);
    say(`The service is busy: trying again in ${wait} s (${attempt} of ${tries - 1})…`);
    await new Promise((done) => setTimeout(done, wait * 1000));
  }
}

// A random UUID, also where the page is not a secure context (plain http on a cluster address), which
// crypto.randomUUID needs: a correction sent again carries it, so that the service stores it once.
function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// A page the browser cannot draw (a PDF, a TIFF, HEIC), as the service read it: the boxes are in the page's own
// pixels, so the overlay takes those while the canvas holds the smaller picture.
function showPreview(preview, image) {
  $("overlay").setAttribute("viewBox", `0 0 ${image.width} ${image.height}`);
  const picture = new Image();
  picture.addEventListener("load", () => {
    const c = $("canvas");
    c.width = preview.width; c.height = preview.height;
    c.getContext("2d").drawImage(picture, 0, 0);
    c.dataset.page = image.page;  // which page it shows, once drawn
    state.view = image.width / preview.width;
    c.classList.remove("fixed");  // a region of it may be dragged out now: the service cuts it from the page
    $("stage-title").textContent = STAGE_TITLE;
  });
  picture.src = preview.url;
}

function showPages(image) {
  const select = $("page");
  $("pager").hidden = image.pages < 2;
  if (select.options.length !== image.pages) {
    select.innerHTML = "";
    for (let p = 1; p <= image.pages; p++) select.add(new Option(String(p), String(p)));
  }
  select.value = String(image.page);
  $("page-count").textContent = `of ${image.pages}`;
  $("all-pages-row").hidden = image.pages < 2;
  $("all-pages-count").textContent = String(image.pages);
}

function colour(conf) {
  return `hsl(${Math.round(Math.max(0, Math.min(1, conf)) * 120)}, 80%, 38%)`;
}

function rect(box, dx, dy, cls, conf, index) {
  const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
  const [x0, y0, x1, y1] = box;
  r.setAttribute("x", x0 + dx); r.setAttribute("y", y0 + dy);
  r.setAttribute("width", Math.max(1, x1 - x0)); r.setAttribute("height", Math.max(1, y1 - y0));
  r.setAttribute("class", cls); r.setAttribute("stroke", colour(conf)); r.dataset.line = index;
  r.addEventListener("mouseenter", () => highlight(index, true));
  r.addEventListener("mouseleave", () => highlight(index, false));
  return r;
}

function polygon(points, dx, dy, cls, conf, index) {
  const p = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
  p.setAttribute("points", points.map(([x, y]) => `${x + dx},${y + dy}`).join(" "));
  p.setAttribute("class", cls); p.setAttribute("stroke", colour(conf)); p.dataset.line = index;
  p.addEventListener("mouseenter", () => highlight(index, true));
  p.addEventListener("mouseleave", () => highlight(index, false));
  return p;
}

function highlight(index, on) {
  document.querySelectorAll(`[data-line="${index}"]`).forEach((el) => el.classList.toggle("hot", on));
}

function showResult(data, region) {
  state.result = data;
  $("forget").disabled = false;
  $("save-as").disabled = false;
  const overlay = $("overlay");
  overlay.innerHTML = "";
  if (state.roi) overlay.appendChild(roiRect(state.roi));
  const list = $("lines");
  list.innerHTML = "";
  data.lines.forEach((line, i) => {
    overlay.appendChild(line.poly ? polygon(line.poly, region.x, region.y, "line", line.confidence, i)
      : rect(line.box, region.x, region.y, "line", line.confidence, i));
    line.words.forEach((w) => overlay.appendChild(rect(w.box, region.x, region.y, "word", w.confidence, i)));
    const li = document.createElement("li");
    li.dataset.line = i;
    if (i > 0 && line.block !== data.lines[i - 1].block) li.classList.add("new-block");
    li.innerHTML = `<input aria-label="Line ${i + 1} text"> <span class="conf"></span>
      <button type="button" class="fix">Send correction</button> <span class="sent" aria-live="polite"></span>`;
    li.querySelector("input").value = line.text;
    li.querySelector(".conf").textContent = `${Math.round(line.confidence * 100)}%`;
    li.querySelector(".fix").addEventListener("click", () => correct(i, li));
    for (const [ev, on] of [["mouseenter", true], ["mouseleave", false], ["focusin", true], ["focusout", false]]) {
      li.addEventListener(ev, () => highlight(i, on));
    }
    list.appendChild(li);
  });
  const t = data.timings;
  $("timings").textContent = `decode ${t.decode_ms.toFixed(0)} ms · detect ${t.detect_ms.toFixed(0)} ms · ` +
    `recognize ${t.recognize_ms.toFixed(0)} ms · total ${t.total_ms.toFixed(0)} ms`;
  $("results").hidden = false;
}

async function correct(index, li) {
  const out = li.querySelector(".sent");
  const value = li.querySelector("input").value.trim();
  if (!value) { out.textContent = "Type the right text first"; out.className = "error"; return; }
  out.textContent = "sending…"; out.className = "sent";
  try {
    const { r, data } = await sendAgainWhileBusy(`api/v1/images/${state.result.request_id}/corrections`, {
      method: "POST", body: JSON.stringify({ value, line_index: index, correction_id: newId() }),
      headers: { "Content-Type": "application/json" },
    }, (msg) => { out.textContent = msg; });
    if (r.status !== 202) throw new Error(data.error ? data.error.message : `HTTP ${r.status}`);
    out.textContent = "✓ correction accepted";
  } catch (err) {
    out.textContent = `Not sent: ${err.message}`; out.className = "error";
  }
}

// Deletes what the service stored of this upload (image, boxes, corrections), after asking: it cannot be undone.
async function forget() {
  if (!confirm("Delete the stored copy of this image, its text and its corrections from the service?")) return;
  $("forget").disabled = true;
  setStatus("Deleting…", "busy");
  try {
    for (const id of [state.result.request_id, ...state.stored]) {  // the pages a download of every page stored too
      const { r, data } = await sendAgainWhileBusy(`api/v1/images/${id}`, { method: "DELETE" });
      if (r.status !== 204) throw new Error(data.error ? data.error.message : `HTTP ${r.status}`);
    }
    state.stored = [];
    // a correction or a download (sent under the upload's key) would store it again
    document.querySelectorAll("#lines .fix").forEach((b) => { b.disabled = true; });
    $("save-as").disabled = true;
    setStatus("Deleted: the service no longer holds this image, its text or its corrections.");
  } catch (err) {
    $("forget").disabled = false;
    setStatus(`Not deleted: ${err.message}`, "error");
  }
}

function roiRect(roi) {
  const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
  r.setAttribute("class", "roi");
  for (const [k, v] of Object.entries({ x: roi.x, y: roi.y, width: roi.w, height: roi.h })) r.setAttribute(k, v);
  return r;
}

// Where the pointer is, in overlay units (the canvas's pixels, or the page's where the service drew it small).
function canvasPoint(ev) {
  const c = $("canvas"), b = c.getBoundingClientRect();
  const w = c.width * state.view, h = c.height * state.view;
  return { x: Math.round(((ev.clientX - b.left) / b.width) * w), y: Math.round(((ev.clientY - b.top) / b.height) * h) };
}

const regionSpec = (roi) => `${roi.x},${roi.y},${roi.x + roi.w},${roi.y + roi.h}`;

function setupRegion() {
  const c = $("canvas");
  c.addEventListener("pointerdown", (ev) => {
    if (state.decoded || c.dataset.page) { state.drag = canvasPoint(ev); c.setPointerCapture(ev.pointerId); }
  });
  c.addEventListener("pointermove", (ev) => {
    if (!state.drag) return;
    const p = canvasPoint(ev), d = state.drag;
    const roi = { x: Math.max(0, Math.min(d.x, p.x)), y: Math.max(0, Math.min(d.y, p.y)) };
    roi.w = Math.min(c.width * state.view, Math.max(d.x, p.x)) - roi.x;
    roi.h = Math.min(c.height * state.view, Math.max(d.y, p.y)) - roi.y;
    $("overlay").innerHTML = ""; $("overlay").appendChild(roiRect(roi));
    state.pending = roi;
  });
  c.addEventListener("pointerup", () => {
    state.drag = null;
    const roi = state.pending; state.pending = null;
    if (roi && roi.w >= 16 && roi.h >= 16) {
      state.roi = roi; $("clear-roi").disabled = false;
      $("roi-info").textContent = `region ${roi.w}×${roi.h} at (${roi.x}, ${roi.y})`;
    }
  });
  $("clear-roi").addEventListener("click", clearRegion);
}

function clearRegion() {
  state.roi = null; $("overlay").innerHTML = ""; $("clear-roi").disabled = true; $("roi-info").textContent = "";
}

function setupInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => ev.target.files[0] && loadFile(ev.target.files[0]));
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("file").click(); } });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault(); drop.classList.remove("over");
    if (ev.dataTransfer.files[0]) loadFile(ev.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (ev) => {
    const item = [...ev.clipboardData.items].find((i) => i.kind === "file");
    if (item) loadFile(item.getAsFile());
  });
  $("read").addEventListener("click", read);
  $("page").addEventListener("change", (ev) => {  // another page: its own region, if any, once it is drawn
    state.page = Number(ev.target.value); clearRegion(); read();
  });
  $("copy").addEventListener("click", async () => {
    const text = [...document.querySelectorAll("#lines li")]  // a blank line between blocks, as ?format=text
      .map((li) => (li.classList.contains("new-block") ? "\n" : "") + li.querySelector("input").value).join("\n");
    try { await navigator.clipboard.writeText(text); setStatus("Copied."); } catch { setStatus("Copy failed: select the text instead.", "error"); }
  });
  $("forget").addEventListener("click", forget);
  $("save-as").addEventListener("click", saveAs);
  $("download").addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(state.result, null, 2)], { type: "application/json" }));
    a.download = `ocr-${state.result.request_id}.json`; a.click();
  });
}

setupInput();
setupRegion();
const savedKey = sessionStorage.getItem("ocr-api-key");
if (savedKey) { $("api-key").value = savedKey; $("key-row").hidden = false; }
