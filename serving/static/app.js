// Vitrina's search page: plain JS over the JSON API (/page/config, /search, /search/image, /products/{id}...).
// The state (query, filters, price range, sort, page, "more like this") lives in the URL, so the back
// button and shared links work; every key the page reads beyond "results" may be absent.
"use strict";
const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 24;
const MAX_END = 10000; // offset + k at most (the API's MAX_K)
const FACET_SHOWN = 8; // values listed per facet before "Show all"
const SWATCHES = 6; // variant swatches per card before "+N"
const SORTS = ["relevance", "price_asc", "price_desc"];

let config = { display_fields: [], currency: "USD", facet_fields: [], price_field: null, has_images: false,
               similar_space: null, max_k: 100 };
let state = emptyState();
let money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
let latest = 0; // the newest request; older answers are dropped

function emptyState() {
  return { q: "", like: null, where: {}, priceMin: null, priceMax: null, sort: "relevance", page: 1, debug: false };
}

function number(text) {
  if (text === null || text === "") return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

// --- the state and the URL -------------------------------------------------------------------------------

function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  const s = emptyState();
  s.q = (params.get("q") || "").trim();
  s.like = params.get("like") || null;
  for (const item of params.getAll("where")) {
    const at = item.indexOf("=");
    if (at > 0) (s.where[item.slice(0, at)] ||= []).push(item.slice(at + 1));
  }
  s.priceMin = number(params.get("price_min"));
  s.priceMax = number(params.get("price_max"));
  s.sort = SORTS.includes(params.get("sort")) ? params.get("sort") : "relevance";
  s.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  s.debug = params.get("debug") === "1";
  return s;
}

function filterParams(s, { skipField = null, skipPrice = false } = {}) {
  const params = new URLSearchParams();
  for (const [field, values] of Object.entries(s.where)) {
    if (field !== skipField) for (const value of values) params.append("where", `${field}=${value}`);
  }
  if (!skipPrice && s.priceMin !== null) params.set("price_min", s.priceMin);
  if (!skipPrice && s.priceMax !== null) params.set("price_max", s.priceMax);
  return params;
}

function urlOf(s) {
  const params = new URLSearchParams();
  if (s.q) params.set("q", s.q);
  if (s.like) params.set("like", s.like);
  for (const [key, value] of filterParams(s)) params.append(key, value);
  if (s.sort !== "relevance") params.set("sort", s.sort);
  if (s.page > 1) params.set("page", s.page);
  if (s.debug) params.set("debug", "1");
  const text = params.toString();
  return text ? `/?${text}` : "/";
}

function go(changes, { keepPage = false } = {}) {
  state = { ...state, ...(keepPage ? {} : { page: 1 }), ...changes };
  history.pushState(null, "", urlOf(state));
  show();
}

function filtersActive(s = state) {
  return Object.keys(s.where).length > 0 || s.priceMin !== null || s.priceMax !== null;
}

// --- talking to the API ----------------------------------------------------------------------------------

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    const error = new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function pageSize() {
  return Math.min(PAGE_SIZE, config.max_k || PAGE_SIZE);
}

function facetColumns() {
  if (config.facet_fields.length) return config.facet_fields;
  return config.price_field ? [config.price_field] : []; // facets= brings the price range and the total
}

// --- what runs for a state -------------------------------------------------------------------------------

function show() {
  $("query").value = state.q;
  $("debug").checked = state.debug;
  $("sort").value = state.sort;
  $("sort-label").hidden = !config.price_field || Boolean(state.like);
  if (state.like) return similar();
  if (state.q) return search();
  latest++;
  clearResults();
  renderFacets({});
  renderPrice(null);
  document.body.classList.toggle("no-filters", !filtersActive());
  setStatus("Type a query or drop a photo.");
}

async function search() {
  const s = state, run = ++latest, k = pageSize();
  const params = filterParams(s);
  params.set("q", s.q);
  params.set("k", k);
  if (s.page > 1) params.set("offset", (s.page - 1) * k);
  if (s.sort !== "relevance") params.set("sort", s.sort);
  const columns = facetColumns();
  for (const column of columns) params.append("facets", column);
  // A column's counts, and the price slider's ends, come from the same search without that column's own
  // filter, so a shopper sees the other values they could add (and the whole price range).
  const sides = [];
  for (const field of config.facet_fields) {
    if (s.where[field]?.length) sides.push(side(s, { skipField: field }, [field]).then((body) => ({ field, body })));
  }
  if (columns.length && (s.priceMin !== null || s.priceMax !== null)) {
    sides.push(side(s, { skipPrice: true }, [columns[0]]).then((body) => ({ price: true, body })));
  }
  setStatus("Searching…");
  try {
    const [body, ...others] = await Promise.all([call(`/search?${params}`), ...sides]);
    if (run !== latest) return;
    const facets = { ...(body.facets || {}) };
    let bounds = body.price || null;
    for (const other of others) {
      if (other.field && other.body.facets) facets[other.field] = other.body.facets[other.field] || {};
      if (other.price) bounds = other.body.price || bounds;
    }
    renderFacets(facets);
    renderPrice(bounds);
    renderAnswer(body, `for “${s.q}”`);
    renderDidYouMean(body);
    renderPager(body);
  } catch (e) {
    if (run === latest) failed(e);
  }
}

function side(s, skip, facets) {
  const params = filterParams(s, skip);
  params.set("q", s.q);
  params.set("k", 1);
  for (const column of facets) params.append("facets", column);
  return call(`/search?${params}`);
}

async function similar() {
  const s = state, run = ++latest;
  const params = filterParams(s);
  params.set("k", pageSize());
  if (config.similar_space) params.set("space", config.similar_space);
  const id = encodeURIComponent(s.like);
  setStatus("Finding products like this one…");
  try {
    const [body, product] = await Promise.all([call(`/products/${id}/similar?${params}`),
                                               call(`/products/${id}`).catch(() => ({ id: s.like }))]);
    if (run !== latest) return;
    renderFacets({});
    renderPrice(null);
    renderAnswer(body, `like “${titleOf(product)}”`);
    renderDidYouMean({});
    renderPager(null);
  } catch (e) {
    if (run === latest) failed(e);
  }
}

async function searchImage(file) {
  if (!file) return;
  const run = ++latest;
  const params = filterParams(state);
  params.set("k", pageSize());
  const form = new FormData();
  form.append("file", file);
  setStatus("Looking at your photo…");
  try {
    const body = await call(`/search/image?${params}`, { method: "POST", body: form });
    if (run !== latest) return;
    renderAnswer(body, `like ${file.name}`);
    renderDidYouMean({});
    renderPager(null);
  } catch (e) {
    if (run === latest) failed(e);
  }
}

function failed(error) {
  clearResults();
  renderFacets({}); // the chosen values stay, so a filter the catalog refuses can be unchecked
  renderPrice(null);
  $("clear-filters").hidden = !filtersActive();
  document.body.classList.toggle("no-filters", !filtersActive() && !$("facets").children.length);
  setStatus(error.message, true);
}

function clearResults() {
  $("results").replaceChildren();
  $("no-results").hidden = true;
  $("did-you-mean").hidden = true;
  $("pager").hidden = true;
}

// --- rendering -------------------------------------------------------------------------------------------

function label(field) {
  const words = field.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/_/g, " ").toLowerCase().trim();
  const short = words.replace(/\s+name$/, "") || words;
  return short.charAt(0).toUpperCase() + short.slice(1);
}

function text(value) {
  return value === null || value === undefined || value === "" ? "" : String(value);
}

function titleOf(record) {
  return text(record[config.display_fields[0]]) || record.id;
}

function renderAnswer(body, what) {
  if (body.index_version) $("index-version").textContent = body.index_version;
  const grid = $("results");
  grid.replaceChildren(...body.results.map(card));
  const empty = $("no-results");
  empty.hidden = body.results.length > 0;
  if (!body.results.length) renderNoResults(body);
  if (!body.results.length && state.sort === "relevance") $("sort-label").hidden = true; // nothing to sort
  const k = pageSize(), first = (state.page - 1) * k + 1, last = first + body.results.length - 1;
  let line;
  if (!body.results.length) line = `No results ${what}`;
  else if (typeof body.total === "number" && !state.like) {
    line = pastTotal(body) ? `${first}–${last} results ${what} (${closeMatches(body.total)})`
                           : `${first}–${last} of ${body.total} results ${what}`;
  } else line = `${body.results.length} results ${what}`;
  if (state.debug && body.rules_fired?.length) line += ` · rules fired: ${body.rules_fired.join(", ")}`;
  setStatus(line);
  $("filters-toggle").textContent = filtersActive() ? `Filters (${countFilters()})` : "Filters";
  $("clear-filters").hidden = !filtersActive();
  const nothingToFilter = !$("facets").children.length && $("price-filter").hidden && !filtersActive();
  document.body.classList.toggle("no-filters", nothingToFilter); // no empty filter column
}

// A relevance ranking goes on past the matched set that `total` and the facets count (the products holding
// the query's words or close enough to it), with looser products: such pages do not say "of total".
function pastTotal(body) {
  return typeof body.total === "number" && (state.page - 1) * pageSize() + body.results.length > body.total;
}

function closeMatches(total) {
  if (!total) return "no close matches, only related products";
  return `${total} close ${total === 1 ? "match" : "matches"}, then related products`;
}

function countFilters() {
  const values = Object.values(state.where).reduce((n, list) => n + list.length, 0);
  return values + (state.priceMin !== null || state.priceMax !== null ? 1 : 0);
}

function card(hit) {
  const el = document.createElement("article");
  el.className = "card";
  if (config.has_images) {
    const photo = document.createElement("div");
    photo.className = "photo";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.onerror = () => photo.classList.add("missing");
    img.onload = () => photo.classList.remove("missing");
    photo.append(img);
    el.append(photo);
  }
  const inner = document.createElement("div");
  inner.className = "body";
  for (const name of ["title", "meta", "price"]) {
    const part = document.createElement("div");
    part.className = name;
    inner.append(part);
  }
  if (Array.isArray(hit.variants) && hit.variants.length) inner.append(swatches(el, [hit.id, ...hit.variants]));
  if (state.debug) {
    const debug = document.createElement("div");
    debug.className = "debug";
    debug.textContent = `score ${Number(hit.score).toFixed(3)}`;
    inner.append(debug);
  }
  if (config.similar_space) {
    const more = document.createElement("button");
    more.className = "secondary more-like-this";
    more.type = "button";
    more.textContent = "More like this";
    more.onclick = () => { go({ like: el.dataset.id, q: "" }); window.scrollTo(0, 0); };
    inner.append(more);
  }
  el.append(inner);
  fill(el, hit);
  return el;
}

function fill(el, record) {
  el.dataset.id = record.id;
  const [titleField, ...rest] = config.display_fields;
  el.querySelector(".title").textContent = text(record[titleField]) || record.id;
  el.querySelector(".meta").textContent = rest.map((f) => text(record[f])).filter(Boolean).join(" · ");
  const price = config.price_field ? record[config.price_field] : null;
  el.querySelector(".price").textContent = typeof price === "number" ? money.format(price) : "";
  const img = el.querySelector(".photo img");
  if (img) {
    img.alt = titleOf(record);
    img.src = `/products/${encodeURIComponent(record.id)}/image`;
  }
}

function swatches(el, ids) {
  const row = document.createElement("div");
  row.className = "swatches";
  row.setAttribute("aria-label", `${ids.length} variants`);
  ids.slice(0, SWATCHES).forEach((id, i) => {
    const swatch = document.createElement("button");
    swatch.type = "button";
    swatch.className = i === 0 ? "swatch active" : "swatch";
    swatch.dataset.id = id;
    swatch.title = `variant ${i + 1} (${id})`;
    if (config.has_images) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = "";
      img.src = `/products/${encodeURIComponent(id)}/image`;
      swatch.append(img);
    } else swatch.textContent = String(i + 1);
    swatch.onclick = async () => {
      try {
        fill(el, await call(`/products/${encodeURIComponent(id)}`));
        for (const other of row.querySelectorAll(".swatch")) other.classList.toggle("active", other === swatch);
      } catch (e) { setStatus(e.message, true); }
    };
    row.append(swatch);
  });
  if (ids.length > SWATCHES) {
    const more = document.createElement("span");
    more.className = "more-variants";
    more.textContent = `+${ids.length - SWATCHES}`;
    row.append(more);
  }
  return row;
}

function renderNoResults(body) {
  const box = $("no-results");
  const line = document.createElement("p");
  line.textContent = state.q ? `No products match “${state.q}”${filtersActive() ? " with these filters" : ""}.`
                             : "No products match.";
  box.replaceChildren(line);
  if (state.page > 1) { // a link to a page past the end
    line.textContent = `Page ${state.page} is past the last result. `;
    line.append(searchLink("Back to the first page", { ...state, page: 1 }));
    return;
  }
  if (Array.isArray(body.suggestions) && body.suggestions.length) {
    const tips = document.createElement("p");
    tips.className = "suggestions";
    tips.append("Try: ");
    body.suggestions.forEach((word, i) => {
      if (i) tips.append(", ");
      tips.append(searchLink(word, { ...emptyState(), q: word, debug: state.debug }));
    });
    box.append(tips);
  }
  if (filtersActive()) {
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "secondary";
    clear.textContent = "Search without filters";
    clear.onclick = clearFilters;
    box.append(clear);
  }
}

function searchLink(words, target) {
  const link = document.createElement("a");
  link.href = urlOf(target);
  link.textContent = words;
  link.onclick = (event) => { event.preventDefault(); go(target); };
  return link;
}

function renderDidYouMean(body) {
  const box = $("did-you-mean");
  const corrected = body.corrected_query;
  box.hidden = !corrected || corrected === state.q;
  if (box.hidden) return;
  box.replaceChildren("Showing results for ", searchLink(corrected, { ...state, q: corrected, page: 1 }),
                      ` (you typed “${state.q}”).`);
}

function renderPager(body) {
  const pager = $("pager");
  if (!body || !body.results.length) { pager.hidden = true; return; }
  const k = pageSize();
  // A price sort pages through the matched set, so `total` says how many pages there are; a relevance
  // ranking may go on past it (pastTotal), so it offers the next page while pages are full.
  const counted = typeof body.total === "number" && state.sort !== "relevance" && !pastTotal(body);
  let pages;
  if (counted) pages = Math.max(1, Math.ceil(Math.min(body.total, MAX_END) / k));
  else pages = body.results.length === k ? state.page + 1 : state.page; // no end known: next while pages are full
  pages = Math.min(pages, Math.floor(MAX_END / k));
  pager.hidden = pages <= 1 && state.page <= 1;
  $("prev-page").disabled = state.page <= 1;
  $("next-page").disabled = state.page >= pages;
  $("page-label").textContent = counted ? `Page ${state.page} of ${pages}` : `Page ${state.page}`;
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  const fields = [...new Set([...config.facet_fields, ...Object.keys(state.where)])];
  for (const field of fields) {
    const counts = facets[field] || {};
    const selected = (state.where[field] || []).map((v) => v.toLowerCase());
    const values = Object.keys(counts);
    for (const value of state.where[field] || []) {
      if (!values.some((v) => v.toLowerCase() === value.toLowerCase())) values.push(value);
    }
    if (!values.length) continue;
    const group = document.createElement("fieldset");
    group.className = "facet";
    group.dataset.field = field;
    const legend = document.createElement("legend");
    legend.textContent = label(field);
    group.append(legend);
    values.forEach((value, i) => {
      const on = selected.includes(value.toLowerCase());
      const row = document.createElement("label");
      row.className = i >= FACET_SHOWN && !on ? "value extra" : "value";
      const check = document.createElement("input");
      check.type = "checkbox";
      check.value = value;
      check.checked = on;
      check.onchange = () => toggle(field, value, check.checked);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = value;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = value in counts ? counts[value] : "0";
      row.append(check, name, count);
      group.append(row);
    });
    const hidden = group.querySelectorAll(".extra").length;
    if (hidden) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "link show-all";
      more.textContent = `Show all ${values.length}`;
      more.onclick = () => { group.classList.add("expanded"); more.remove(); };
      group.append(more);
    }
    box.append(group);
  }
}

function toggle(field, value, on) {
  const where = { ...state.where };
  const others = (where[field] || []).filter((v) => v.toLowerCase() !== value.toLowerCase());
  where[field] = on ? [...others, value] : others;
  if (!where[field].length) delete where[field];
  go({ where });
}

function clearFilters() {
  go({ where: {}, priceMin: null, priceMax: null });
}

function renderPrice(bounds) {
  const box = $("price-filter");
  const set = state.priceMin !== null || state.priceMax !== null;
  if (!config.price_field || !bounds || typeof bounds.min !== "number" || typeof bounds.max !== "number"
      || (bounds.max <= bounds.min && !set)) {
    box.hidden = true;
    return;
  }
  const low = Math.floor(Math.min(bounds.min, state.priceMin ?? bounds.min));
  const high = Math.ceil(Math.max(bounds.max, state.priceMax ?? bounds.max));
  const step = high - low >= 20 ? 1 : 0.01;
  box.hidden = false;
  box.dataset.low = low;
  box.dataset.high = high;
  for (const [id, value] of [["price-min", state.priceMin ?? low], ["price-max", state.priceMax ?? high]]) {
    const input = $(id);
    Object.assign(input, { min: low, max: high, step });
    input.value = value;
  }
  priceLabel();
}

function priceLabel() {
  $("price-label").textContent = `${money.format(Number($("price-min").value))} – ${money.format(Number($("price-max").value))}`;
}

function priceInput(event) {
  const low = $("price-min"), high = $("price-max");
  if (Number(low.value) > Number(high.value)) (event.target === low ? high : low).value = event.target.value;
  priceLabel();
}

function priceChanged() {
  const box = $("price-filter");
  const low = Number($("price-min").value), high = Number($("price-max").value);
  go({ priceMin: low <= Number(box.dataset.low) ? null : low, priceMax: high >= Number(box.dataset.high) ? null : high });
}

// --- start -----------------------------------------------------------------------------------------------

async function loadConfig() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call("/page/config");
    } catch (e) {
      if (e.status !== 503 || attempt >= 60) throw e;
      setStatus("The index is loading…");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function start() {
  try {
    config = { ...config, ...(await loadConfig()) };
    $("index-version").textContent = config.index_version;
  } catch (e) {
    setStatus(`The index is not ready: ${e.message}`, true);
    return;
  }
  try {
    money = new Intl.NumberFormat(undefined, { style: "currency", currency: config.currency });
  } catch { /* an unknown currency code: keep the default */ }
  $("drop-zone").hidden = !config.has_images;
  state = stateFromUrl();
  show();
  document.body.dataset.ready = "1"; // the settings are read (tests wait for this)
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) { setStatus("Type some words to search for.", true); return; }
  go({ q, like: null });
});
$("sort").addEventListener("change", () => go({ sort: $("sort").value }));
$("debug").addEventListener("change", () => go({ debug: $("debug").checked }, { keepPage: true }));
$("prev-page").addEventListener("click", () => { go({ page: state.page - 1 }, { keepPage: true }); window.scrollTo(0, 0); });
$("next-page").addEventListener("click", () => { go({ page: state.page + 1 }, { keepPage: true }); window.scrollTo(0, 0); });
$("clear-filters").addEventListener("click", clearFilters);
for (const id of ["price-min", "price-max"]) {
  $(id).addEventListener("input", priceInput);
  $(id).addEventListener("change", priceChanged);
}
$("filters-toggle").addEventListener("click", () => {
  const open = document.body.classList.toggle("filters-open");
  $("filters-toggle").setAttribute("aria-expanded", String(open));
});
window.addEventListener("popstate", () => { state = stateFromUrl(); show(); });
$("image-input").addEventListener("change", (event) => searchImage(event.target.files[0]));
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  searchImage(event.dataTransfer.files[0]);
});
zone.addEventListener("keydown", (event) => { if (event.key === "Enter") $("image-input").click(); });
start();
