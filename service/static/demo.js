// The demo page: a photo -> /downscale -> /upscale, beside a bicubic upscale of the same LR, with PSNR.
// No framework and nothing from elsewhere: the page's Content-Security-Policy allows this origin alone.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "rescale-api-key";
const views = {}; // the last run's images, {width, height, rgba}, for the comparison
let photo = null; // {blob, name}
let runs = 0; // a newer run makes an older one's results stale

class Failure extends Error {}

// ---- the service

async function post(path, blob, name) {
  const key = $("key").value.trim();
  if (/[^\x21-\x7e]/.test(key)) throw new Failure("The API key may hold printable ASCII characters only.");
  const body = new FormData();
  body.append("image", blob, name);
  let response;
  try {
    response = await fetch(path, { method: "POST", body, headers: key ? { "X-API-Key": key } : {} });
  } catch (error) {
    throw new Failure(`${path.split("?")[0]}: no answer from the service (${error.message})`);
  }
  if (!response.ok) throw new Failure(`${path.split("?")[0]}: ${await serviceMessage(response)}`);
  return response.blob();
}

// the service answers errors as JSON {code, message}: show them as they are
async function serviceMessage(response) {
  const text = await response.text();
  try {
    const error = JSON.parse(text);
    if (error.message) return `${response.status} ${error.code}: ${error.message}`;
  } catch {
    // not JSON: a proxy's page, shown as text below
  }
  return `${response.status} ${response.statusText} ${text.slice(0, 300)}`.trim();
}

// ---- pixels

// 8-bit RGB/RGBA PNGs are decoded here: a canvas keeps premultiplied alpha, which would change the RGB of an
// alpha-mode LR (its alpha carries the code, not transparency). Others (JPEG, WebP, other PNGs) go to the browser.
async function decodePng(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 || view.getUint32(0) !== 0x89504e47 || view.getUint32(4) !== 0x0d0a1a0a) return null;
  let width = 0, height = 0, channels = 0;
  const data = [];
  for (let at = 8; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at), type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === "IHDR") {
      [width, height] = [view.getUint32(at + 8), view.getUint32(at + 12)];
      const [depth, colour, interlace] = [bytes[at + 16], bytes[at + 17], bytes[at + 20]];
      if (depth !== 8 || (colour !== 2 && colour !== 6) || interlace !== 0) return null;
      channels = colour === 6 ? 4 : 3;
    } else if (type === "IDAT") data.push(bytes.subarray(at + 8, at + 8 + length));
    else if (type === "IEND") break;
    at += 12 + length;
  }
  const inflated = new Response(new Blob(data).stream().pipeThrough(new DecompressionStream("deflate")));
  const raw = new Uint8Array(await inflated.arrayBuffer());
  const stride = width * channels, rgba = new Uint8ClampedArray(width * height * 4);
  let previous = new Uint8Array(stride), line = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    if (filter > 4) throw new Failure(`The PNG has an unknown row filter ${filter}.`);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels] : 0, b = previous[i], c = i >= channels ? previous[i - channels] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[i] = row[i] + p; // a Uint8Array: modulo 256, as the filters are defined
    }
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 3; k++) rgba[(y * width + x) * 4 + k] = line[x * channels + k];
      rgba[(y * width + x) * 4 + 3] = channels === 4 ? line[x * 4 + 3] : 255;
    }
    [previous, line] = [line, previous];
  }
  return { width, height, rgba, alpha: channels === 4 };
}

// any image the browser reads; the photo goes on white, as the service composites transparent photos
async function decodeImage(blob, onWhite = false) {
  const png = await decodePng(new Uint8Array(await blob.arrayBuffer()));
  if (png && onWhite && png.alpha) {
    for (let i = 0; i < png.rgba.length; i += 4) {
      const a = png.rgba[i + 3] / 255;
      for (let k = 0; k < 3; k++) png.rgba[i + k] = Math.round(png.rgba[i + k] * a + 255 * (1 - a));
    }
  }
  if (png) return png;
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return { width: bitmap.width, height: bitmap.height, rgba: data, alpha: false };
}

function withoutAlpha(image) {
  const rgba = Uint8ClampedArray.from(image.rgba);
  for (let i = 3; i < rgba.length; i += 4) rgba[i] = 255;
  return { ...image, rgba, alpha: false };
}

// ---- bicubic (Keys, a = -0.5) and PSNR

function keys(x) {
  const a = -0.5;
  x = Math.abs(x);
  return x < 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : x < 2 ? (((x - 5) * x + 8) * x - 4) * a : 0;
}

// the taps of each output pixel as Pillow places them: LR pixel i covers HR pixels [i * s, (i + 1) * s) (the
// service pads the photo at the bottom and right), the kernel is cut at the image's edges and renormalised
function taps(inSize, outSize, scale) {
  return Array.from({ length: outSize }, (_, o) => {
    const centre = (o + 0.5) / scale;
    const first = Math.max(0, Math.floor(centre - 1.5)), end = Math.min(inSize, Math.floor(centre + 2.5));
    const weights = [];
    for (let i = first; i < end; i++) weights.push(keys(i - centre + 0.5));
    const total = weights.reduce((sum, w) => sum + w, 0);
    return { first, weights: weights.map((w) => w / total) };
  });
}

// separable, rows first, the intermediate rounded to 8 bits (as Pillow's resize does)
function bicubic(image, width, height, scale) {
  const middle = resample(image.rgba, image.width, image.height, taps(image.width, width, scale), 4, image.width * 4);
  const rgba = resample(middle, width, image.height, taps(image.height, height, scale), width * 4, 4);
  return { width, height, rgba, alpha: false };
}

// one 1-D pass along `along` (the byte step between taps); `across` steps between the lines it resamples
function resample(source, width, height, outTaps, along, across) {
  const horizontal = along === 4, lines = horizontal ? height : width;
  const outWidth = horizontal ? outTaps.length : width, outHeight = horizontal ? height : outTaps.length;
  const target = new Uint8ClampedArray(outWidth * outHeight * 4).fill(255);
  for (let line = 0; line < lines; line++) {
    outTaps.forEach(({ first, weights }, o) => {
      const at = ((horizontal ? line * outWidth + o : o * outWidth + line) * 4);
      for (let k = 0; k < 3; k++) {
        let sum = 0;
        for (let j = 0; j < weights.length; j++) sum += weights[j] * source[line * across + (first + j) * along + k];
        target[at + k] = Math.round(sum);
      }
    });
  }
  return target;
}

function psnrY(a, b, crop) {
  let sum = 0, count = 0;
  for (let y = crop; y < a.height - crop; y++) {
    for (let x = crop; x < a.width - crop; x++) {
      const i = (y * a.width + x) * 4;
      const d = (65.481 * (a.rgba[i] - b.rgba[i]) + 128.553 * (a.rgba[i + 1] - b.rgba[i + 1]) +
        24.966 * (a.rgba[i + 2] - b.rgba[i + 2])) / 255;
      sum += d * d;
      count++;
    }
  }
  return sum === 0 ? Infinity : 10 * Math.log10((255 * 255 * count) / sum);
}

// ---- the page

const size = (image) => `${image.width} × ${image.height}`;
const bytes = (n) => n.toLocaleString("en-US");
const decibels = (p) => (p === Infinity ? "∞" : p.toFixed(2));

function paint(canvas, image) {
  [canvas.width, canvas.height] = [image.width, image.height];
  canvas.getContext("2d").putImageData(new ImageData(image.rgba, image.width, image.height), 0, 0);
}

function paintComparison() {
  const left = views.restored, right = views[$("against").value], canvas = $("compare");
  if (!left || !right) return;
  [canvas.width, canvas.height] = [left.width, left.height];
  // whole pixels: a small image is enlarged by an integer factor, a large one scrolls at 1:1
  canvas.style.width = `${left.width * Math.max(1, Math.floor(640 / left.width))}px`;
  const edge = Math.round((left.width * $("split").value) / 100), context = canvas.getContext("2d");
  context.putImageData(new ImageData(right.rgba, right.width, right.height), 0, 0);
  context.putImageData(new ImageData(left.rgba, left.width, left.height), 0, 0, 0, 0, edge, left.height);
  context.fillStyle = "#fff";
  context.fillRect(edge, 0, 1, left.height);
}

function report(state, message) {
  document.body.dataset.state = state;
  $("run").disabled = state === "working";
  $("status").textContent = state === "error" ? "" : message;
  $("error").textContent = state === "error" ? message : "";
  $("error").hidden = state !== "error";
  if (state === "error") $("results").hidden = true; // no results of an earlier run under a new error
}

async function rescale() {
  const run = ++runs;
  const scale = Number(document.querySelector("input[name=scale]:checked").value), mode = $("mode").value;
  const format = mode === "alpha" ? "png" : $("format").value;
  report("working", `Downscaling ${photo.name} (x${scale}, ${mode}, ${format})…`);
  try {
    const query = new URLSearchParams({ scale, mode, format });
    const lrFile = await post(`/downscale?${query}`, photo.blob, photo.name);
    if (run !== runs) return;
    report("working", "Upscaling the LR file…");
    const restoredFile = await post("/upscale", lrFile, `lr.${format}`);
    if (run !== runs) return;
    const [original, lr, restored] = await Promise.all([
      decodeImage(photo.blob, true), decodeImage(lrFile), decodeImage(restoredFile),
    ]);
    if (run !== runs) return;
    const shown = withoutAlpha(lr);
    const upscaled = bicubic(shown, original.width, original.height, scale);
    Object.assign(views, { restored, bicubic: upscaled, original });
    paint($("lr-canvas"), shown);
    paint($("restored-canvas"), restored);
    paint($("bicubic-canvas"), upscaled);
    paintComparison();
    $("lr-caption").textContent = lr.alpha
      ? "its RGB shown: the alpha channel carries the hidden code, not transparency, so it is dropped here"
      : `${lrFile.type || format}, as the file holds it`;
    const cells = {
      "original-size": size(original), "original-bytes": bytes(photo.blob.size),
      "lr-size": size(lr), "lr-bytes": bytes(lrFile.size),
      "restored-size": size(restored), "restored-bytes": bytes(restoredFile.size), "bicubic-size": size(upscaled),
    };
    const comparable = restored.width === original.width && restored.height === original.height;
    cells["psnr-restored"] = comparable ? decibels(psnrY(restored, original, scale)) : "sizes differ";
    cells["psnr-bicubic"] = decibels(psnrY(upscaled, original, scale));
    for (const [id, text] of Object.entries(cells)) $(id).textContent = text;
    $("results").hidden = false;
    report("done", `Done: ${photo.name}, x${scale}, mode=${mode}, format=${format}.`);
  } catch (error) {
    if (run === runs) report("error", error instanceof Failure ? error.message : `The page failed: ${error.message}`);
  }
}

function choose(blob, name) {
  photo = { blob, name };
  rescale();
}

function syncFormat() {
  const alpha = $("mode").value === "alpha";
  $("format").disabled = alpha;
  if (alpha) $("format").value = "png";
  $("format-note").hidden = !alpha;
}

// #sample=/same-origin/path&scale=4&mode=plain&format=jpeg&key=KEY fills the form and runs it (the tests do so)
async function fromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.size) return;
  history.replaceState(null, "", location.pathname); // a key read from the fragment leaves the address bar
  const scale = fragment.get("scale");
  if (scale) document.querySelector(`input[name=scale][value="${scale === "4" ? 4 : 2}"]`).checked = true;
  for (const id of ["mode", "format", "key"]) if (fragment.has(id)) $(id).value = fragment.get(id);
  if (fragment.has("key")) sessionStorage.setItem(KEY_STORE, $("key").value);
  syncFormat();
  const sample = fragment.get("sample");
  if (!sample) return;
  const url = new URL(sample, location.href);
  if (url.origin !== location.origin) return report("error", "The sample must come from this service's origin.");
  const response = await fetch(url);
  if (!response.ok) return report("error", `${url.pathname}: ${await serviceMessage(response)}`);
  choose(await response.blob(), url.pathname.split("/").pop());
}

function start() {
  $("key").value = sessionStorage.getItem(KEY_STORE) ?? "";
  $("key").addEventListener("input", () => sessionStorage.setItem(KEY_STORE, $("key").value));
  $("mode").addEventListener("change", syncFormat);
  $("photo").addEventListener("change", () => $("photo").files[0] && choose($("photo").files[0], $("photo").files[0].name));
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    if (photo) rescale();
    else report("error", "Choose a photo first.");
  });
  const drop = $("drop"); // the whole page takes a dropped photo: a near miss must not open the file instead
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => event.relatedTarget || drop.classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) choose(file, file.name);
  });
  $("split").addEventListener("input", paintComparison);
  $("against").addEventListener("change", paintComparison);
  syncFormat();
  fromFragment().catch((error) => report("error", `The sample could not be read: ${error.message}`));
}

start();
