"""The HTML report's colours, stylesheet and script, inlined into every page (the report opens offline)."""

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#bab0ac")

PLOT_METRICS = ("max_ulp", "max_rel", "max_abs", "snr_db", "identical_fraction")  # html.METRICS's keys, in order
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;max-width:1500px;
padding:12px 16px 40px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:14px;margin:12px 0 4px}table{border-collapse:collapse;margin:4px 0}
th,td{padding:2px 8px;text-align:right;white-space:nowrap;vertical-align:top}th{background:#eef0f3;font-weight:600}
#tensors th{position:sticky;top:0;z-index:1}.pane{overflow:auto;max-height:88vh;border:1px solid #e3e5e8}
td.cls{white-space:normal;min-width:110px;font-size:11px}
.op{font:12px system-ui,sans-serif;color:#555}.l{text-align:left}#tensors tbody{border-top:1px solid #d8dbe0}
.grid td,.grid th{border-bottom:1px solid #eceef1}tr.eq{color:#2e7d32}tr.bad{background:#fdecea}
td.t{white-space:normal;overflow-wrap:anywhere;min-width:160px;max-width:340px}
#tensors{font-size:12.5px}#tensors td,#tensors th{padding:1px 4px}#tensors td[rowspan]{background:#fff;color:#222}
code,pre,td.t,td.m{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:320px;margin:4px 0;white-space:pre-wrap}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;color:#fff;font-size:13px}
.ok,.pass{background:#2e7d32}.fail{background:#c62828}
i.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.muted,small{color:#6b7280}.facts td{text-align:left;padding:1px 12px 1px 0;white-space:normal}
.facts td:first-child{color:#6b7280}
details{margin:4px 0;border:1px solid #e3e5e8;border-radius:5px;padding:4px 10px}summary{cursor:pointer}
.legend span{margin-right:16px;white-space:nowrap}.err{color:#c62828}
svg{max-width:100%;height:auto;background:#fff}svg text{font:11px system-ui,sans-serif;fill:#444}
rect.b{fill:transparent}rect.b:hover{fill:rgba(0,0,0,.07)}.tools{margin:6px 0}
#q{font-size:14px;padding:4px 8px;width:320px}#metric label{margin-right:10px;white-space:nowrap}
#plot g.m{display:none}svg text.tol{font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
""" + "".join(f".c{i}{{background:{c}}}" for i, c in enumerate(PALETTE)) + "".join(
    f'#plot[data-m="{m}"] g.m[data-m="{m}"]{{display:inline}}'
    for m in PLOT_METRICS)

JS = """(function(){var plot=document.getElementById('plot');if(!plot)return;
var radios=[].slice.call(document.querySelectorAll('#metric input')),m=/(?:^#|&)metric=([a-z_]+)/.exec(location.hash);
radios.forEach(function(r){if(m)r.checked=r.value===m[1];r.addEventListener('change',function(){
if(r.checked)plot.setAttribute('data-m',r.value);});if(r.checked)plot.setAttribute('data-m',r.value);});})();
(function(){var q=document.getElementById('q');if(!q)return;var same=document.getElementById('same'),
count=document.getElementById('count'),bodies=[].slice.call(document.querySelectorAll('#tensors tbody')),timer=0,
more=document.getElementById('more'),all=document.getElementById('all'),
page=+document.getElementById('tensors').getAttribute('data-page')||Infinity,limit=page;
function apply(){var s=q.value.trim().toLowerCase(),n=0,k=0;bodies.forEach(function(b){
var match=(!s||b.getAttribute('data-k').indexOf(s)>=0)&&!(same.checked&&b.classList.contains('same')),
show=match&&k<limit;if(match)n++;if(show)k++;if(b.hidden===show)b.hidden=!show;});
count.textContent=n+' of '+bodies.length+' tensors '+(k<n?'match, the first '+k+' shown':'shown');
more.hidden=all.hidden=k>=n;more.textContent='show '+Math.min(page,n-k)+' more';}
function fromHash(){var h=location.hash,m=/(?:^#|&)filter=([^&]*)/.exec(h),row=/^#t[0-9]+$/.test(h)&&
document.getElementById(h.slice(1));if(m){try{q.value=decodeURIComponent(m[1]);}catch(e){q.value=m[1];}}
if(row&&row.hidden){q.value='';same.checked=false;limit=Math.max(limit,bodies.indexOf(row)+1);}apply();
if(row)row.scrollIntoView();}
function refilter(){limit=page;apply();}
q.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(function(){refilter();try{
history.replaceState(null,'','#filter='+encodeURIComponent(q.value));}catch(e){}},bodies.length>300?250:0);});
more.addEventListener('click',function(){limit+=page;apply();});
all.addEventListener('click',function(){limit=Infinity;apply();});
same.addEventListener('change',refilter);window.addEventListener('hashchange',fromHash);fromHash();})();"""
