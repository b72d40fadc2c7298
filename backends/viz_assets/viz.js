// netc viz: the interactive page. The model and the first picture come from
// backends/viz.py; `assemble` below is a line-for-line port of its `assemble`, so a click
// re-lays out the same DOT with Graphviz compiled to WebAssembly (viz.js, inlined above).
// Nothing is fetched: the page's Content-Security-Policy forbids it.
"use strict";

(function () {
  const model = JSON.parse(document.getElementById("netc-model").textContent);
  const state = JSON.parse(document.getElementById("netc-state").textContent);
  const view = document.getElementById("view");
  const stage = document.getElementById("stage");
  const panel = document.getElementById("panel");
  const status = document.getElementById("status");
  const search = document.getElementById("search");
  const results = document.getElementById("results");
  const expanded = new Set(state.expanded);
  let colourPaths = !!state.colourPaths;
  let drawnEdges = []; // [from, to, edge id] of the picture shown
  let svg = stage.querySelector("svg");
  let zoom = { x: 0, y: 0, s: 1 };
  let vizPromise = null;
  let picked = null;

  // ------------------------------------------------------------ assemble (see viz.py)

  function unbig(text) {
    // a path count of the model: "0x1f", or "0x1fp300" for 0x1f << 300 (see viz.py's _big)
    const [mantissa, shift] = text.split("p");
    return BigInt(mantissa) << BigInt(shift || 0);
  }

  function assemble(model, expandedSet, colourPaths) {
    const nodes = model.nodes, blocks = model.blocks, children = model.children;
    function rep(item) {
      const chain = [];
      let parent = (nodes[item] || blocks[item]).parent;
      while (parent) {
        chain.push(parent);
        parent = blocks[parent].parent;
      }
      for (let i = chain.length - 1; i >= 0; i--) {
        if (!expandedSet.has(chain[i])) return chain[i];
      }
      return item;
    }
    const out = ["digraph netc {", "  graph [" + model.graph + "];", '  node [fontname="Helvetica", fontsize=11];'];
    out.push('  edge [fontname="Helvetica", arrowsize=0.6];');
    const lines = [];
    if (colourPaths) lines.push(model.legend);
    if (model.caption) lines.push(model.caption);
    if (lines.length) out.push("  label=<" + lines.join("<br/>") + ">; labelloc=b;");
    function emit(cid, indent) {
      for (const item of children[cid] || []) {
        if (item in blocks) {
          const block = blocks[item];
          if (expandedSet.has(item)) {
            out.push(indent + "subgraph cluster_" + item + " {");
            out.push(indent + '  id="' + item + '"; class="cluster-' + item + '"; ' + block.cluster + ";");
            emit(item, indent + "  ");
            out.push(indent + "}");
          } else {
            out.push(indent + item + ' [id="' + item + '", ' + block.box + ', class="box"];');
          }
        } else {
          out.push(indent + item + ' [id="' + item + '", ' + nodes[item].dot + "];");
        }
      }
    }
    emit("", "  ");
    const drawn = new Map();
    // an edge's kind: 0 main, 1 skip, 2 gradient (backward pictures), 3 a value the backward reads
    for (const [u, v, key, label, kind, paths] of model.edges) {
      const ru = rep(u), rv = rep(v);
      if (ru === rv) continue;
      const k = ru + ">" + rv + ">" + (kind === 3 ? "saved" : key);
      const d = drawn.get(k);
      if (d === undefined) drawn.set(k, [ru, rv, label, kind, unbig(paths)]);
      else {
        d[3] = Math.min(d[3], kind);
        d[4] += unbig(paths);
      }
    }
    const palette = model.palette, widths = model.widths;
    const low = model.minbits, span = Math.max(1, model.maxbits - model.minbits);
    const [mainColor, skipColor, zeroColor, gradColor, savedColor] = model.colors;
    const edges = [];
    const joined = new Set();
    for (const d of drawn.values()) if (d[3] !== 3) joined.add(d[0] + ">" + d[1]);
    let i = 0;
    for (const [ru, rv, label, kind, paths] of drawn.values()) {
      if (kind === 3 && joined.has(ru + ">" + rv)) continue; // the forward edge there says enough
      const cls = ["main", "skip", "grad", "saved"][kind];
      let color, width, style = "";
      if (colourPaths && kind <= 1) {
        // log scale between the fewest and the most paths of an edge
        const bits = paths === 0n ? 0 : paths.toString(2).length;
        // a merged edge sums several, so it can pass the largest single edge: clamp
        const b = Math.min(palette.length - 1, Math.floor((Math.max(0, bits - low) * (palette.length - 1)) / span));
        [color, width] = paths !== 0n ? [palette[b], widths[b]] : [zeroColor, "1"];
        style = kind === 1 ? ", style=dashed" : "";
      } else {
        [color, width] = [[mainColor, "1.1"], [skipColor, "1.6"], [gradColor, "1.3"], [savedColor, "0.8"]][kind];
      }
      const weight = kind === 0 || kind === 2 ? "4" : "1";
      let [tail, head] = [ru, rv];
      // a gradient edge is drawn from the consumer up to the producer, arrowhead at the consumer
      if (kind === 2) [tail, head, style] = [rv, ru, style + ", dir=back"];
      else if (kind === 3) style += ", style=dotted, arrowsize=0.4";
      out.push(
        "  " + tail + " -> " + head + ' [id="e' + i + '", class="' + cls + '", label=<' + label + '>, color="' + color +
          '", penwidth=' + width + ", weight=" + weight + style + "];"
      );
      edges.push([ru, rv, "e" + i]);
      i++;
    }
    out.push("}");
    return { dot: out.join("\n") + "\n", edges };
  }

  function visibleCount(expandedSet) {
    function count(cid) {
      let total = 0;
      for (const item of model.children[cid] || []) total += expandedSet.has(item) ? count(item) : 1;
      return total;
    }
    return count("");
  }

  // ------------------------------------------------------------ drawing

  function say(text, warn) {
    status.innerHTML = "";
    const span = document.createElement("span");
    if (warn) span.className = "warn";
    span.textContent = text;
    status.appendChild(span);
  }

  function adopt(newSvg) {
    // Size the picture in CSS pixels (1pt = 1px) and hook it up.
    const box = newSvg.viewBox.baseVal;
    newSvg.setAttribute("width", box.width);
    newSvg.setAttribute("height", box.height);
    stage.replaceChildren(newSvg);
    svg = newSvg;
    // a <title> per element makes the browser's own tooltips; the panel says more
    for (const t of svg.querySelectorAll("title")) t.remove();
  }

  function screenPos(id) {
    const el = document.getElementById(id);
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { x: r.left + r.width / 2, y: r.top + Math.min(r.height / 2, 40) };
  }

  async function redraw(anchor) {
    const count = visibleCount(expanded);
    if (count > state.limit) {
      say("Too large to lay out at once: " + count + " nodes (the limit is " + state.limit + "). Open fewer blocks.", true);
      return false;
    }
    const before = anchor ? screenPos(anchor) : null;
    say("laying out " + count + " nodes...");
    if (vizPromise === null) vizPromise = Viz.instance();
    const viz = await vizPromise;
    const assembled = assemble(model, expanded, colourPaths);
    const t0 = performance.now();
    const result = viz.render(assembled.dot, { format: "svg" });
    if (result.status !== "success") {
      say("layout failed: " + result.errors.map((e) => e.message).join("; "), true);
      return false;
    }
    hoverArmed = false;
    const doc = new DOMParser().parseFromString(result.output, "image/svg+xml");
    adopt(document.importNode(doc.documentElement, true));
    drawnEdges = assembled.edges;
    picked = null;
    if (before) {
      const after = screenPos(anchor);
      if (after) {
        zoom.x += before.x - after.x;
        zoom.y += before.y - after.y;
        apply();
      }
    }
    say(count + " nodes laid out in " + Math.round(performance.now() - t0) + " ms" + (state.note ? ". " + state.note : ""));
    return true;
  }

  // ------------------------------------------------------------ pan and zoom

  function apply() {
    stage.style.transform = "translate(" + zoom.x + "px," + zoom.y + "px) scale(" + zoom.s + ")";
  }

  function fit() {
    const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
    const vw = view.clientWidth, vh = view.clientHeight;
    const s = Math.min(vw / w, vh / h, 1.5);
    if (s >= 0.8) {
      zoom.s = s;
      zoom.x = (vw - w * s) / 2;
      zoom.y = (vh - h * s) / 2;
    } else {
      // too tall to read whole: full size (or the width), from the top
      zoom.s = Math.min(vw / w, 1);
      zoom.x = (vw - w * zoom.s) / 2;
      zoom.y = 10;
    }
    apply();
  }

  function centerOn(id) {
    const el = document.getElementById(id);
    if (!el) return;
    const r = el.getBoundingClientRect(), v = view.getBoundingClientRect();
    if (zoom.s < 0.8) {
      // zoom in around the element first
      const cx = r.left + r.width / 2 - v.left, cy = r.top + r.height / 2 - v.top;
      const k = 1 / zoom.s;
      zoom.x = cx - (cx - zoom.x) * k;
      zoom.y = cy - (cy - zoom.y) * k;
      zoom.s = 1;
      apply();
    }
    const r2 = el.getBoundingClientRect();
    zoom.x += v.left + v.width / 2 - (r2.left + r2.width / 2);
    zoom.y += v.top + v.height / 2 - (r2.top + r2.height / 2);
    apply();
  }

  view.addEventListener(
    "wheel",
    (ev) => {
      ev.preventDefault();
      const v = view.getBoundingClientRect();
      const px = ev.clientX - v.left, py = ev.clientY - v.top;
      const k = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
      const s = Math.min(8, Math.max(0.02, zoom.s * k));
      zoom.x = px - ((px - zoom.x) * s) / zoom.s;
      zoom.y = py - ((py - zoom.y) * s) / zoom.s;
      zoom.s = s;
      apply();
    },
    { passive: false }
  );

  let drag = null;
  view.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, zx: zoom.x, zy: zoom.y, moved: false };
  });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) {
      drag.moved = true;
      view.classList.add("dragging");
    }
    if (drag.moved) {
      zoom.x = drag.zx + dx;
      zoom.y = drag.zy + dy;
      apply();
    }
  });
  window.addEventListener("mouseup", () => {
    view.classList.remove("dragging");
    setTimeout(() => (drag = null), 0);
  });

  // ------------------------------------------------------------ the panel

  function row(table, key, value) {
    if (value === undefined || value === null || value === "") return;
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    const td = tr.insertCell();
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = String(value);
  }

  function bigText(hex) {
    // an exact count (a hex string in the model), shortened when long:
    // 123456789 -> 123,456,789; 10^40 -> 1.00e40 (41 digits)
    const s = unbig(hex).toString();
    if (s.length <= 15) return BigInt(s).toLocaleString("en-US");
    return s[0] + "." + s.slice(1, 3) + "e" + (s.length - 1) + " (" + s.length + " digits)";
  }

  function boundText(b) {
    if (b === null || b === undefined) return "unbounded";
    if (b > -4 && b < 4) return String(Number(Math.pow(10, b).toPrecision(4)));
    const e = Math.floor(b);
    return (Math.pow(10, b - e)).toFixed(2) + "e" + e;
  }

  function show(id) {
    const info = model.info[id];
    if (!info) return;
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = info.title;
    panel.appendChild(h);
    const op = document.createElement("div");
    op.className = "op";
    op.textContent = info.op + (info.opkind && info.opkind !== info.op ? "  (" + info.opkind + ")" : "");
    panel.appendChild(op);
    const t = document.createElement("table");
    row(t, "output", info.shape);
    if (info.inputs) row(t, "inputs", info.inputs.join(", "));
    if (info.outputs) row(t, "outputs", info.outputs.join(", "));
    if (info.attrs) for (const [k, v] of Object.entries(info.attrs)) row(t, k, v);
    if (info.params) for (const [k, v] of Object.entries(info.params)) row(t, "param " + k, v);
    if (info.count) row(t, "parameters", info.count.toLocaleString("en-US"));
    if (info.grad_norm !== undefined) row(t, "gradient norm at init", Number(info.grad_norm).toExponential(3));
    if (info.grad_norms) row(t, "gradient norms at init", info.grad_norms.map((x) => x.toExponential(3)).join(" .. "));
    if (info.kind === "block" || info.kind === "group") {
      row(t, "layers", info.layers);
      if (info.params) row(t, "parameters", Number(info.params).toLocaleString("en-US"));
      if (info.items) row(t, "items", info.items);
    }
    if (info.paths !== undefined) {
      row(t, "gradient paths", bigText(info.paths));
      if (info.shortest !== undefined) {
        row(t, "length (layers)", info.shortest + " .. " + info.longest);
        row(t, "element-wise factors", info.factors[0] + " .. " + info.factors[1]);
        row(t, "attenuation bound", boundText(info.bound));
      }
    }
    row(t, "spec", info.spec);
    panel.appendChild(t);
    if (info.line) {
      const pre = document.createElement("pre");
      pre.textContent = info.line;
      panel.appendChild(pre);
    }
  }

  // A picture redrawn under a still pointer fires mouseover on whatever is now there;
  // only a moving pointer changes the panel.
  let hoverArmed = true;
  let lastPointer = null;
  view.addEventListener("mousemove", (ev) => {
    if (lastPointer && (lastPointer[0] !== ev.clientX || lastPointer[1] !== ev.clientY)) hoverArmed = true;
    lastPointer = [ev.clientX, ev.clientY];
  });
  stage.addEventListener("mouseover", (ev) => {
    if (!hoverArmed) return;
    const g = ev.target.closest("g.node, g.cluster");
    if (g && g.id) show(g.id);
  });

  // ------------------------------------------------------------ clicks

  function clearHighlight() {
    if (!svg) return;
    svg.classList.remove("dimmed");
    for (const el of svg.querySelectorAll(".hl, .picked")) el.classList.remove("hl", "picked");
    picked = null;
  }

  function highlightPaths(id) {
    // the drawn edges on some path from id to an output: reachable from id, and
    // reaching an output node (o0, o1, ...)
    clearHighlight();
    const fwd = new Map(), bwd = new Map();
    for (const [u, v, e] of drawnEdges) {
      if (!fwd.has(u)) fwd.set(u, []);
      fwd.get(u).push([v, e]);
      if (!bwd.has(v)) bwd.set(v, []);
      bwd.get(v).push(u);
    }
    const toOut = new Set();
    const stack = Object.keys(model.nodes).filter((n) => n[0] === "o");
    for (const n of stack) toOut.add(n);
    while (stack.length) {
      const n = stack.pop();
      for (const u of bwd.get(n) || []) if (!toOut.has(u)) (toOut.add(u), stack.push(u));
    }
    const seen = new Set([id]);
    const queue = [id];
    let edges = 0;
    while (queue.length) {
      const n = queue.pop();
      for (const [v, e] of fwd.get(n) || []) {
        if (!toOut.has(v)) continue;
        const el = document.getElementById(e);
        if (el) el.classList.add("hl");
        edges++;
        if (!seen.has(v)) (seen.add(v), queue.push(v));
      }
    }
    for (const n of seen) {
      const el = document.getElementById(n);
      if (el) el.classList.add("hl");
    }
    const el = document.getElementById(id);
    if (el) el.classList.add("picked");
    svg.classList.add("dimmed");
    picked = id;
    const info = model.info[id] || {};
    say(
      (info.paths !== undefined ? bigText(info.paths) + " gradient paths" : "paths") + " from the outputs to " +
        (info.title || id) + (info.shortest !== undefined ? ", " + info.shortest + " to " + info.longest + " layers long" : "") +
        " (" + edges + " drawn edges). Click the background to clear."
    );
  }

  async function toggle(id, open) {
    if (open) expanded.add(id);
    else {
      expanded.delete(id);
      // closing a block closes what is inside it
      for (const b of Object.keys(model.blocks)) if (isInside(b, id)) expanded.delete(b);
    }
    if (!(await redraw(id))) {
      if (open) expanded.delete(id);
      else expanded.add(id);
    }
  }

  function isInside(item, container) {
    let p = (model.nodes[item] || model.blocks[item]).parent;
    while (p) {
      if (p === container) return true;
      p = model.blocks[p].parent;
    }
    return false;
  }

  stage.addEventListener("click", (ev) => {
    if (drag && drag.moved) return;
    if (!state.interactive) return;
    const node = ev.target.closest("g.node");
    if (node && node.id) {
      if (node.id in model.blocks && !ev.shiftKey) toggle(node.id, true);
      else if (picked === node.id) clearHighlight();
      else highlightPaths(node.id);
      return;
    }
    const cluster = ev.target.closest("g.cluster");
    if (cluster && cluster.id in model.blocks) {
      toggle(cluster.id, false);
      return;
    }
    if (!ev.target.closest("g.edge")) clearHighlight();
  });

  // ------------------------------------------------------------ search

  const entries = Object.entries(model.info)
    .filter(([id, info]) => info.kind !== "group")
    .map(([id, info]) => [id, info.title, info.title.toLowerCase(), info.op]);
  let hits = [], active = 0;

  function listHits() {
    const q = search.value.trim().toLowerCase();
    results.replaceChildren();
    hits = q ? entries.filter((e) => e[2].includes(q)).slice(0, 50) : [];
    active = 0;
    results.hidden = hits.length === 0;
    hits.forEach(([id, title, , op], i) => {
      const li = document.createElement("li");
      li.textContent = title;
      const small = document.createElement("small");
      small.textContent = op;
      li.appendChild(small);
      if (i === 0) li.className = "active";
      li.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        reveal(id);
      });
      results.appendChild(li);
    });
    if (q && !hits.length) say("nothing named like “" + search.value + "”", true);
  }

  async function reveal(id) {
    results.hidden = true;
    // open every container around it
    let p = (model.nodes[id] || model.blocks[id]).parent;
    let opened = false;
    while (p) {
      if (!expanded.has(p)) (expanded.add(p), (opened = true));
      p = model.blocks[p].parent;
    }
    if (opened && !(await redraw(null))) return;
    for (const el of svg.querySelectorAll(".found")) el.classList.remove("found");
    const el = document.getElementById(id);
    if (!el) return;
    el.classList.add("found");
    hoverArmed = false;
    centerOn(id);
    show(id);
    say("found " + model.info[id].title);
  }

  search.addEventListener("input", listHits);
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (!hits.length) return;
      active = (active + (ev.key === "ArrowDown" ? 1 : hits.length - 1)) % hits.length;
      [...results.children].forEach((li, i) => li.classList.toggle("active", i === active));
    } else if (ev.key === "Enter") {
      if (!hits.length) listHits();
      if (hits.length) reveal(hits[active][0]);
    } else if (ev.key === "Escape") {
      results.hidden = true;
    }
  });
  search.addEventListener("blur", () => setTimeout(() => (results.hidden = true), 150));

  // ------------------------------------------------------------ buttons

  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("expand-all").addEventListener("click", async () => {
    const before = new Set(expanded);
    for (const b of Object.keys(model.blocks)) expanded.add(b);
    if (!(await redraw(null))) {
      expanded.clear();
      for (const b of before) expanded.add(b);
    } else fit();
  });
  document.getElementById("collapse-all").addEventListener("click", async () => {
    expanded.clear();
    if (await redraw(null)) fit();
  });
  const colour = document.getElementById("colour");
  colour.checked = colourPaths;
  colour.addEventListener("change", async () => {
    colourPaths = colour.checked;
    await redraw(null);
  });

  // ------------------------------------------------------------ start

  adopt(svg);
  drawnEdges = assemble(model, expanded, colourPaths).edges;
  fit();
  if (!state.interactive) for (const b of document.querySelectorAll("#bar button")) b.disabled = true;
  say(state.note ? state.note : "Click a block to open it; scroll to zoom; drag to pan.", !!state.note);
  window.netc = { model, state, expanded, assemble, redraw, reveal, visibleCount, ready: true };
})();
