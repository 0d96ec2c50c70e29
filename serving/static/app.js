// Vitrina's search page: plain JS over the JSON API (/search, /search/image, /products/{id}/similar).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { last: null };

function filterParams() {
  const params = new URLSearchParams();
  const category = $("filter-category").value, brand = $("filter-brand").value;
  const min = $("filter-price-min").value, max = $("filter-price-max").value;
  if (category) params.append("category", category);
  if (brand) params.append("brand", brand);
  if (min !== "") params.set("price_min", min);
  if (max !== "") params.set("price_max", max);
  params.set("k", $("filter-k").value);
  return params;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  return body;
}

function money(value) {
  return typeof value === "number" ? value.toLocaleString(undefined, { style: "currency", currency: "USD" }) : "";
}

function render(body, label) {
  $("index-version").textContent = body.index_version;
  const grid = $("results");
  grid.replaceChildren();
  for (const hit of body.results) {
    const card = document.createElement("article");
    card.className = "card";
    card.dataset.id = hit.id;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = hit.title || hit.id;
    img.src = `/products/${encodeURIComponent(hit.id)}/image`;
    img.onerror = () => { img.style.visibility = "hidden"; };
    const inner = document.createElement("div");
    inner.className = "body";
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = hit.title || hit.name || hit.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = [hit.brand, hit.category || hit.articleType, `score ${hit.score.toFixed(3)}`].filter(Boolean).join(" · ");
    const price = document.createElement("div");
    price.className = "price";
    price.textContent = money(hit.price);
    const more = document.createElement("button");
    more.className = "secondary more-like-this";
    more.type = "button";
    more.textContent = "More like this";
    more.onclick = () => similar(hit.id, hit.title || hit.id);
    inner.append(title, meta, price, more);
    card.append(img, inner);
    grid.append(card);
  }
  setStatus(body.results.length ? `${body.results.length} results ${label}` : `No results ${label}`);
}

async function runSearch() {
  const q = $("query").value.trim();
  if (!q) { setStatus("Type some words to search for.", true); return; }
  const params = filterParams();
  params.set("q", q);
  state.last = runSearch;
  setStatus("Searching…");
  try { render(await call(`/search?${params}`), `for “${q}”`); } catch (e) { setStatus(e.message, true); }
}

async function similar(id, title) {
  state.last = () => similar(id, title);
  setStatus("Finding look-alikes…");
  try {
    render(await call(`/products/${encodeURIComponent(id)}/similar?${filterParams()}`), `like “${title}”`);
  } catch (e) { setStatus(e.message, true); }
}

async function searchImage(file) {
  if (!file) return;
  state.last = () => searchImage(file);
  const form = new FormData();
  form.append("file", file);
  setStatus("Looking at your photo…");
  try {
    render(await call(`/search/image?${filterParams()}`, { method: "POST", body: form }), `like ${file.name}`);
  } catch (e) { setStatus(e.message, true); }
}

async function loadFilters() {
  try {
    const info = await call("/filters");
    $("index-version").textContent = info.index_version;
    for (const [role, id] of [["category", "filter-category"], ["brand", "filter-brand"]]) {
      const select = $(id);
      select.closest("label").hidden = !info[role].length;
      for (const value of info[role]) select.append(new Option(value, value));
    }
    const hasPrice = Boolean(info.price);
    $("filter-price-min").closest("label").hidden = !hasPrice;
    $("filter-price-max").closest("label").hidden = !hasPrice;
  } catch (e) { setStatus(`The index is not ready: ${e.message}`, true); }
}

$("search-form").addEventListener("submit", (event) => { event.preventDefault(); runSearch(); });
$("image-input").addEventListener("change", (event) => searchImage(event.target.files[0]));
for (const id of ["filter-category", "filter-brand", "filter-price-min", "filter-price-max", "filter-k"]) {
  $(id).addEventListener("change", () => state.last && state.last());
}
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  searchImage(event.dataTransfer.files[0]);
});
zone.addEventListener("keydown", (event) => { if (event.key === "Enter") $("image-input").click(); });
loadFilters();
