/* The HTML report's graph view (comparator/report/graphview.py). Reads the JSON block #graph-data, lays the
   visible nodes out top to bottom with dagre, draws them as SVG into #graph, colours them by the picked variant,
   error and metric, and keeps the node panel and the #node=<id> fragment in step. Names are always set as text. */
(function () {
  'use strict';
  var block = document.getElementById('graph-data'), box = document.getElementById('graph');
  if (!block || !box || typeof dagre === 'undefined') return;
  var D = JSON.parse(block.textContent), N = D.nodes, T = D.tensors, NS = 'http://www.w3.org/2000/svg';
  var H = 24, CHAR = 6.4, RAMP = [[255, 237, 160], [253, 141, 60], [189, 0, 38]];
  var COLORS = {id: '#d9f0d3', err: '#c084fc', none: '#f3f4f6', fused: '#e5e7eb'};
  var panel = document.getElementById('graph-panel'), legend = document.getElementById('graph-legend');
  var pick = {variant: document.getElementById('graph-variant'), source: document.getElementById('graph-source'),
              metric: document.getElementById('graph-metric')};
  var kids = N.map(function () { return []; }), readers = N.map(function () { return []; }), byId = {};
  N.forEach(function (n, i) {
    byId[n[0]] = i;
    if (n[2] >= 0) kids[n[2]].push(i);
    n[3].forEach(function (j) { readers[j].push(i); });
  });
  var open = {}, sel = -1, L = null, view = {k: 1, x: 0, y: 0}, els = [], svg = null, vp = null, marks = null;

  function el(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function html(tag, text, parent, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    if (parent) parent.appendChild(e);
    return e;
  }

  /* The node that stands for node i: i itself, or its outermost ancestor whose subgraph is folded. */
  function rep(i) {
    var r = i;
    for (var p = N[i][2]; p >= 0; p = N[p][2]) if (!open[p]) r = p;
    return r;
  }

  function label(i) {
    var n = N[i];
    return n[1] + (kids[i].length && !open[i] ? ' \u25b8' + descendants(i) : '');
  }

  function descendants(i) {
    return kids[i].reduce(function (s, k) { return s + 1 + descendants(k); }, 0);
  }

  /* The layout of the visible nodes: unfolded subgraphs are clusters, and an edge leads from the node holding a
     subgraph to the subgraph's first nodes. dagre recurses as deep as the graph is long and overflows the stack
     near 2,000 chained nodes, so a larger graph is laid out in bands of consecutive nodes (the nodes' order is a
     topological one), stacked top to bottom; an edge between two bands is drawn straight. */
  function layout() {
    var t0 = performance.now(), reps = N.map(function (n, i) { return rep(i); }), shown = [], links = [], seen = {};
    reps.forEach(function (r, i) { if (r === i) shown.push(i); });
    function link(a, b) {
      var k = a + '>' + b;
      if (a !== b && !seen[k]) { seen[k] = true; links.push([a, b]); }
    }
    N.forEach(function (n, i) { n[3].forEach(function (j) { link(reps[j], reps[i]); }); });
    shown.forEach(function (i) {
      var p = N[i][2];
      if (p >= 0 && !N[i][3].some(function (j) { return N[reps[j]][2] === p; })) link(p, i);
    });
    var bands = [];
    for (var k = 0; k < shown.length; k += D.band) bands = bands.concat(lay(shown.slice(k, k + D.band), links));
    var out = stack(bands, links);
    out.shown = shown;
    out.reps = reps;
    out.members = {};
    shown.forEach(function (i) { out.members[i] = []; });
    reps.forEach(function (r, i) { out.members[r].push(i); });
    out.ms = performance.now() - t0;
    return out;
  }

  function cluster(g, p) {
    if (!g.hasNode('c' + p)) {
      g.setNode('c' + p, {});
      if (N[p][2] >= 0) g.setParent('c' + p, cluster(g, N[p][2]));
    }
    return 'c' + p;
  }

  /* dagre's layout of one band of nodes, [{nodes, g}]; halved again if dagre still runs out of stack. */
  function lay(band, links) {
    var inBand = {}, g = new dagre.graphlib.Graph({compound: band.some(function (i) { return N[i][2] >= 0; })});
    g.setGraph({rankdir: 'TB', nodesep: 14, ranksep: 22, edgesep: 6, marginx: 12, marginy: 12});
    g.setDefaultEdgeLabel(function () { return {}; });
    band.forEach(function (i) {
      inBand[i] = true;
      g.setNode('n' + i, {width: Math.max(44, label(i).length * CHAR + 16), height: H});
      if (N[i][2] >= 0) g.setParent('n' + i, cluster(g, N[i][2]));
    });
    links.forEach(function (e) { if (inBand[e[0]] && inBand[e[1]]) g.setEdge('n' + e[0], 'n' + e[1]); });
    try {
      dagre.layout(g);
    } catch (err) {
      if (!(err instanceof RangeError) || band.length < 64) throw err;
      var half = Math.ceil(band.length / 2);
      return lay(band.slice(0, half), links).concat(lay(band.slice(half), links));
    }
    return [{nodes: band, g: g}];
  }

  /* The bands one below the other, centred: {pos (node -> box), clusters, edges, w, h}. */
  function stack(bands, links) {
    var out = {pos: {}, clusters: [], edges: [], w: 1, h: 0}, where = {}, GAP = 36;
    out.w = Math.max.apply(null, bands.map(function (b) { return b.g.graph().width || 1; }));
    bands.forEach(function (b, k) {
      var dx = (out.w - (b.g.graph().width || 1)) / 2, dy = out.h;
      b.g.nodes().forEach(function (v) {
        var n = b.g.node(v), box = {x: n.x + dx, y: n.y + dy, width: n.width, height: n.height};
        if (v.charAt(0) === 'n') { out.pos[+v.slice(1)] = box; where[+v.slice(1)] = k; }
        else out.clusters.push({p: +v.slice(1), box: box});
      });
      b.g.edges().forEach(function (e) {
        out.edges.push({v: +e.v.slice(1), w: +e.w.slice(1), points: b.g.edge(e).points.map(function (p) {
          return {x: p.x + dx, y: p.y + dy}; })});
      });
      out.h += (b.g.graph().height || 1) + GAP;
    });
    out.h = Math.max(1, out.h - GAP);
    links.forEach(function (e) {
      if (where[e[0]] === where[e[1]]) return;
      var a = out.pos[e[0]], b = out.pos[e[1]];
      out.edges.push({v: e[0], w: e[1], points: [{x: a.x, y: a.y + H / 2}, {x: b.x, y: b.y - H / 2}]});
    });
    return out;
  }

  function draw() {
    L = layout();
    if (!svg) {
      box.textContent = '';
      svg = el('svg', {role: 'img', 'aria-label': 'model graph'}, box);
      vp = el('g', {}, svg);
    }
    vp.textContent = '';
    var clusters = el('g', {}, vp), fused = el('g', {'class': 'fuse'}, vp), edges = el('g', {}, vp),
        nodes = el('g', {}, vp);
    marks = {fused: fused, top: null};
    L.clusters.forEach(function (c) {
      var b = c.box;
      el('rect', {'class': 'gc', x: b.x - b.width / 2, y: b.y - b.height / 2, width: b.width, height: b.height,
                  rx: 6}, clusters);
      el('text', {x: b.x - b.width / 2 + 4, y: b.y + b.height / 2 + 12}, clusters, 'subgraph of ' + N[c.p][0]);
    });
    L.edges.forEach(function (e) {
      var pts = e.points.map(function (p) { return p.x.toFixed(1) + ' ' + p.y.toFixed(1); });
      el('path', {'class': 'ge', d: 'M' + pts.join('L'), 'data-v': e.v, 'data-w': e.w}, edges);
    });
    els = [];
    L.shown.forEach(function (i) {
      var p = L.pos[i], g = el('g', {'class': 'gn' + (kids[i].length ? ' sub' : ''), 'data-i': i,
                                     'data-id': N[i][0], transform: 'translate(' + (p.x - p.width / 2).toFixed(1) +
                                     ',' + (p.y - H / 2).toFixed(1) + ')'}, nodes);
      el('title', {}, g, N[i][0] + ' (' + (N[i][5] ? N[i][5] + ':' : '') + N[i][1] + ')');
      el('rect', {width: p.width, height: H, rx: 4}, g);
      el('text', {x: p.width / 2, y: 16, 'text-anchor': 'middle'}, g, label(i));
      els[i] = g;
    });
    marks.top = el('g', {}, vp);
    paint();
    if (sel >= 0) highlight(L.reps[sel]);
  }

  function variant() { return D.variants[+pick.variant.selectedIndex] || null; }

  function num(x) {
    return x === 'inf' ? Infinity : x === '-inf' ? -Infinity : x === 'nan' ? NaN : x;
  }

  /* Node i's worst figure for the picked variant, error and metric, over its tensors and those of the nodes its
     folded subgraph hides: {kind: err, num (with v), id (bit-identical), fused or none}. */
  function worst(i, vi, local, mi) {
    var snr = mi === 0, out = {kind: 'none', v: null}, name = D.variants[vi], seenId = false, seenFused = false;
    L.members[i].forEach(function (m) {
      N[m][4].forEach(function (ti) {
        var t = T[ti], e = vi < 0 ? null : (local ? t[6] : t[5]);
        e = e ? e[vi] : null;
        if (t[4].indexOf(name) >= 0 || t[4].indexOf(D.reference) >= 0) seenFused = true;
        if (e === 0) { seenId = true; return; }
        if (e === null || e === undefined) return;
        var v = typeof e === 'string' ? NaN : num(e[mi]);
        if (typeof e === 'string' || v !== v) { out.kind = 'err'; return; }
        if (v === null || out.kind === 'err') return;
        if (out.kind !== 'num' || (snr ? v < out.v : v > out.v)) { out.kind = 'num'; out.v = v; }
      });
    });
    if (out.kind === 'none' && seenId) out.kind = 'id';
    if (out.kind === 'none' && seenFused) out.kind = 'fused';
    return out;
  }

  /* The figures drawn ranked from 0 (the best of them) to 1 (the worst): SNR linear in dB, the others on a log
     scale; the two ends' figures for the legend. */
  function scale(values, mi) {
    var key = mi === 0 ? function (v) { return -v; } : mi === 1 ? function (v) { return Math.log10(v + 1); }
      : function (v) { return v > 0 ? Math.log10(v) : -Infinity; };
    var keys = values.map(key).filter(isFinite), lo = Math.min.apply(null, keys), hi = Math.max.apply(null, keys);
    var ends = values.filter(isFinite).sort(function (a, b) { return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0; });
    return {best: ends[0], worst: ends[ends.length - 1], f: function (v) {
      var x = key(v);
      if (x === Infinity || x !== x) return 1;
      if (x === -Infinity || !keys.length) return 0;
      return hi === lo ? 0.5 : (x - lo) / (hi - lo);
    }};
  }

  function ramp(t) {
    var x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1), k = Math.min(RAMP.length - 2, Math.floor(x)), f = x - k;
    return 'rgb(' + RAMP[k].map(function (c, j) { return Math.round(c + (RAMP[k + 1][j] - c) * f); }).join(',') + ')';
  }

  function paint() {
    var vi = D.variants.length ? pick.variant.selectedIndex : -1, local = pick.source.value === 'local',
        mi = pick.metric.selectedIndex, found = {}, values = [];
    L.shown.forEach(function (i) {
      var w = worst(i, vi, local, mi);
      found[i] = w;
      if (w.kind === 'num') values.push(w.v);
    });
    var s = scale(values, mi);
    L.shown.forEach(function (i) {
      var w = found[i], g = els[i], t = w.kind === 'num' ? s.f(w.v) : 0;
      g.firstChild.nextSibling.setAttribute('fill', w.kind === 'num' ? ramp(t) : COLORS[w.kind]);
      g.classList.toggle('fused', w.kind === 'fused');
      g.lastChild.style.fill = w.kind === 'num' && t > 0.7 ? '#fff' : '';
    });
    drawLegend(s, values.length, mi);
    mark();
  }

  function drawLegend(s, count, mi) {
    legend.textContent = '';
    var name = D.metrics[mi][1];
    if (count) {
      html('span', name + ': ' + fmt(s.best, mi) + ' ', legend);
      var r = html('i', null, legend, 'ramp');
      r.style.background = 'linear-gradient(90deg,' + [0, 0.5, 1].map(ramp).join(',') + ')';
      html('span', ' ' + fmt(s.worst, mi) + ' (worst)', legend);
    }
    [['id', 'bit-identical'], ['err', 'not comparable / NaN'], ['fused', 'fused away'], ['none', 'no figures']]
      .forEach(function (k) {
        html('i', null, legend).style.background = COLORS[k[0]];
        html('span', k[1], legend);
      });
  }

  /* The first divergence, the origins and the fused groups of the picked variant. */
  function mark() {
    var name = variant(), seen = {};
    marks.fused.textContent = '';
    marks.top.textContent = '';
    els.forEach(function (g) { if (g) g.classList.remove('first'); });
    var first = name !== null ? D.first[name] : null;
    if (first !== null && first !== undefined) {
      var f = L.reps[first], p = L.pos[f];
      els[f].classList.add('first');
      el('text', {'class': 'gl', x: p.x + p.width / 2 + 6, y: p.y + 4}, marks.top, 'first divergence');
    }
    ((name !== null && D.origins[name]) || []).forEach(function (o, k) {
      var r = L.reps[o], p = L.pos[r];
      if (seen[r]) return;
      seen[r] = true;
      var c = el('g', {'class': 'go'}, marks.top);
      el('circle', {'class': 'go', cx: p.x - p.width / 2, cy: p.y - H / 2, r: 8}, c);
      el('text', {'class': 'go', x: p.x - p.width / 2, y: p.y - H / 2 + 3.5, 'text-anchor': 'middle'}, c, k + 1);
      el('title', {}, c, 'origin #' + (k + 1) + ' of ' + name + ' (adds error itself)');
    });
    ((name !== null && D.fusion[name]) || []).forEach(function (group) {
      var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      group.forEach(function (m) {
        var p = L.pos[L.reps[m]];
        x0 = Math.min(x0, p.x - p.width / 2); x1 = Math.max(x1, p.x + p.width / 2);
        y0 = Math.min(y0, p.y - H / 2); y1 = Math.max(y1, p.y + H / 2);
      });
      var r = el('rect', {'class': 'gf', x: x0 - 5, y: y0 - 5, width: x1 - x0 + 10, height: y1 - y0 + 10, rx: 8},
                 marks.fused);
      el('title', {}, r, 'fused by ' + name + ': ' + group.map(function (m) { return N[m][0]; }).join(', '));
    });
  }

  function fmt(v, mi) {
    v = num(v);
    if (v === null || v === undefined) return '-';
    if (v !== v) return 'nan';
    if (!isFinite(v)) return v > 0 ? '\u221e' : '-\u221e';
    if (mi === 0) return v.toFixed(1);
    if (Number.isInteger(v) && Math.abs(v) < 1e7) return v.toLocaleString('en');
    return Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
  }

  function apply() {
    vp.setAttribute('transform', 'translate(' + view.x.toFixed(1) + ',' + view.y.toFixed(1) + ') scale(' +
                    view.k.toFixed(4) + ')');
  }

  function size() {
    var r = box.getBoundingClientRect();
    return {w: r.width || 800, h: r.height || 500};
  }

  function zoom(f, cx, cy) {
    var k = Math.max(0.02, Math.min(4, view.k * f));
    view.x = cx - (cx - view.x) * k / view.k;
    view.y = cy - (cy - view.y) * k / view.k;
    view.k = k;
    apply();
  }

  function fit(all) {
    var s = size(), k = all ? Math.min(s.w / L.w, s.h / L.h, 1) : Math.min(1, s.w / L.w);
    view = {k: k, x: (s.w - L.w * k) / 2, y: all ? (s.h - L.h * k) / 2 : 0};
    apply();
  }

  /* Bring node i into view: centred, unless it is already well inside the box. */
  function focus(i) {
    var p = L.pos[L.reps[i]], s = size(), x = view.x + p.x * view.k, y = view.y + p.y * view.k;
    if (view.k >= 0.5 && x > 40 && x < s.w - 40 && y > 30 && y < s.h - 30) return;
    view.k = Math.max(view.k, 0.7);
    view.x = s.w / 2 - p.x * view.k;
    view.y = s.h / 2 - p.y * view.k;
    apply();
  }

  function highlight(r) {
    els.forEach(function (g) { if (g) g.classList.remove('sel'); });
    if (els[r]) els[r].classList.add('sel');
    [].forEach.call(vp.querySelectorAll('path.ge'), function (e) {
      var on = +e.getAttribute('data-v') === r || +e.getAttribute('data-w') === r;
      e.style.stroke = on ? '#1d4ed8' : '';
      e.style.strokeWidth = on ? '2' : '';
    });
  }

  function toggle(i) {
    if (open[i]) {
      delete open[i];
      Object.keys(open).forEach(function (k) { if (rep(+k) !== +k) delete open[k]; });
    } else {
      open[i] = true;
    }
    draw();
    select(i);
    focus(i);
  }

  /* The panel of node i: what it is, the nodes around it, and its tensor rows per compared variant. */
  function select(i) {
    sel = i;
    highlight(L.reps[i]);
    var n = N[i];
    panel.className = '';
    panel.textContent = '';
    var h = html('h3', null, panel);
    html('span', n[0], h, 'name');
    html('div', (n[5] ? n[5] + ':' : '') + n[1] + (L.reps[i] !== i ? ' (inside a folded subgraph)' : ''), panel,
         'muted');
    if (n[2] >= 0) links('in the subgraph of', [n[2]]);
    if (kids[i].length) {
      var b = html('button', (open[i] ? 'fold' : 'unfold') + ' its subgraph (' + descendants(i) + ' nodes)', panel);
      b.id = 'graph-toggle';
      b.addEventListener('click', function () { toggle(i); });
    }
    links('reads from', n[3]);
    links('read by', readers[i]);
    rows(n[4]);
  }

  function links(text, targets) {
    if (!targets.length) return;
    var p = html('div', text + ': ', panel);
    targets.slice(0, 12).forEach(function (j, k) {
      var a = html('a', N[j][0], p, 'name');
      a.href = '#node=' + encodeURIComponent(N[j][0]);
      if (k < Math.min(12, targets.length) - 1) p.appendChild(document.createTextNode(', '));
    });
    if (targets.length > 12) p.appendChild(document.createTextNode(' and ' + (targets.length - 12) + ' more'));
  }

  function rows(tensors) {
    if (!tensors.length) {
      html('p', 'No tensor of this node was tapped.', panel, 'muted');
      return;
    }
    var local = D.local, table = html('table', null, panel, 'grid'), head = html('tr', null, table);
    ['variant', 'SNR dB', 'max ULP', 'max abs', 'max rel'].concat(local ? ['local SNR', 'local ULP'] : [])
      .forEach(function (c) { html('th', c, head); });
    var span = local ? 7 : 5;
    tensors.forEach(function (ti) {
      var t = T[ti], tr = html('tr', null, table, 'gt'), td = html('td', null, tr, 'l');
      td.colSpan = span;
      var a = html('a', t[0], td, 'name');
      a.href = '#t' + t[3];
      html('span', '  ' + (t[1] ? '[' + t[1].join(', ') + ']' : '?') + ' ' + (t[2] || ''), td, 'muted');
      if (t[4].indexOf(D.reference) >= 0) html('div', 'fused in ' + D.reference + ' (the reference)', td, 'muted');
      D.variants.forEach(function (v, vi) {
        var r = html('tr', null, table);
        html('td', v, r, 'l');
        if (t[4].indexOf(v) >= 0) return cell(r, 'fused in ' + v, span - 1);
        figures(r, t[5][vi], 4);
        if (local) figures(r, t[6] ? t[6][vi] : null, 2);
      });
    });
  }

  function cell(r, text, span) {
    var td = html('td', text, r, 'l');
    td.colSpan = span;
  }

  function figures(r, e, count) {
    if (e === null || e === undefined) return cell(r, 'not compared', count);
    if (e === 0) return cell(r, 'bit-identical', count);
    if (typeof e === 'string') return cell(r, 'not comparable: ' + e, count);
    for (var k = 0; k < count; k++) html('td', fmt(e[k], k), r);
    if (e[4] && count === 4) r.className = 'bad';
  }

  function fromHash() {
    var m = /(?:^#|&)node=([^&]*)/.exec(location.hash), id;
    if (!m || !L) return;
    try { id = decodeURIComponent(m[1]); } catch (e) { id = m[1]; }
    var i = byId[id];
    if (i === undefined) return;
    var changed = false;
    for (var p = N[i][2]; p >= 0; p = N[p][2]) if (!open[p]) { open[p] = changed = true; }
    if (changed) draw();
    select(i);
    focus(i);
  }

  function listen() {
    var down = null;
    box.addEventListener('pointerdown', function (e) {
      down = {x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, node: e.target.closest('.gn'), moved: false};
      box.classList.add('drag');
    });
    window.addEventListener('pointermove', function (e) {
      if (!down || !vp) return;
      var dx = e.clientX - down.x, dy = e.clientY - down.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) down.moved = true;
      if (down.moved) { view.x = down.vx + dx; view.y = down.vy + dy; apply(); }
    });
    window.addEventListener('pointerup', function () {
      var d = down;
      down = null;
      box.classList.remove('drag');
      if (!d || d.moved || !d.node) return;
      var i = +d.node.getAttribute('data-i');
      select(i);
      try {
        history.replaceState(null, '', '#node=' + encodeURIComponent(N[i][0]));
      } catch (err) { /* some browsers refuse it on file: pages; the selection stands */ }
    });
    box.addEventListener('dblclick', function (e) {
      var g = e.target.closest('.gn');
      if (g && kids[+g.getAttribute('data-i')].length) toggle(+g.getAttribute('data-i'));
    });
    box.addEventListener('wheel', function (e) {
      if (!vp) return;
      e.preventDefault();
      var r = box.getBoundingClientRect();
      if (e.ctrlKey || e.metaKey) zoom(Math.exp(-e.deltaY * 0.002), e.clientX - r.left, e.clientY - r.top);
      else { view.x -= e.deltaX; view.y -= e.deltaY; apply(); }
    }, {passive: false});
    document.getElementById('graph-in').addEventListener('click', function () {
      var s = size(); zoom(1.25, s.w / 2, s.h / 2); });
    document.getElementById('graph-out').addEventListener('click', function () {
      var s = size(); zoom(0.8, s.w / 2, s.h / 2); });
    document.getElementById('graph-fit').addEventListener('click', function () { fit(true); });
    document.getElementById('graph-first').addEventListener('click', function () {
      var f = D.first[variant()];
      if (f !== undefined && f !== null) { select(f); focus(f); }
    });
    [pick.variant, pick.source, pick.metric].forEach(function (s) {
      s.addEventListener('change', function () { paint(); if (sel >= 0) select(sel); });
    });
    window.addEventListener('hashchange', fromHash);
  }

  function start() {
    try {
      draw();
    } catch (err) {
      box.setAttribute('data-state', 'failed');
      box.textContent = 'The graph could not be laid out: ' + err;
      return;
    }
    fit(false);
    box.setAttribute('data-state', 'drawn');
    box.setAttribute('data-nodes', L.shown.length);
    box.setAttribute('data-layout-ms', L.ms.toFixed(0));
    box.setAttribute('data-ready-ms', performance.now().toFixed(0));
    fromHash();
  }

  listen();
  var main = N.filter(function (n) { return n[2] < 0; }).length;
  if (main <= D.limit) {
    start();
  } else {
    box.setAttribute('data-state', 'deferred');
    var b = html('button', 'lay out the graph (' + main.toLocaleString('en') + ' nodes: this may take a while)', box);
    b.addEventListener('click', start);
  }
})();
