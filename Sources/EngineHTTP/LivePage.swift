import FileFormats
import Foundation
import Rules

/// The live page served at `/`: plain HTML, CSS and JavaScript (no build step, nothing from a CDN),
/// drawing the `snapshot` events of `/events`. Narrow screens get one column. The first snapshot is in
/// the page itself, so it shows the pipeline at once (and a headless browser sees it on load).
enum LivePage {
    /// The page with `initial` (a snapshot) embedded.
    /// `explained` (what `/api/explain` answers for the rule `/?rule=ID` opens) is embedded too, so the opened
    /// explanation is there at once.
    static func html(initial: JSONValue, explained: JSONValue = .null) -> String {
        // Inside <script>, "</script>" must not appear: `<` only occurs in JSON strings, where \u003c means it.
        func embedded(_ value: JSONValue) -> String { value.jsonText.replacingOccurrences(of: "<", with: "\\u003c") }
        return template.replacingOccurrences(of: "INITIAL_SNAPSHOT", with: embedded(initial))
            .replacingOccurrences(of: "INITIAL_EXPLAINED", with: embedded(explained))
    }

    static let template = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>sensor-pipeline</title>
        <style>
          :root { color-scheme: light dark; --muted: #7a7f87; --fire: #d0342c; --pend: #c98a00; --ok: #2e8b57;
                  --line: #8884; --card: #8881; --accent: #2f6fd6; }
          * { box-sizing: border-box; }
          body { font: 14px/1.45 system-ui, sans-serif; margin: 0; padding: 12px; }
          header { display: flex; gap: 10px 16px; align-items: baseline; flex-wrap: wrap; }
          h1 { font-size: 18px; margin: 0; }
          #status { color: var(--muted); }
          #status.down { color: var(--fire); font-weight: 600; }
          .chip { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
                  border: 1px solid currentColor; white-space: nowrap; }
          .chip.firing { color: var(--fire); } .chip.pending { color: var(--pend); } .chip.inactive { color: var(--ok); }
          .chip.on { color: var(--accent); } .chip.off, .chip.other { color: var(--muted); }
          main { display: grid; grid-template-columns: minmax(0, 1fr); gap: 14px; margin-top: 12px; }
          @media (min-width: 1000px) { main { grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); } }
          .column { display: grid; gap: 14px; align-content: start; min-width: 0; }
          section { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; min-width: 0; }
          h2 { font-size: 15px; margin: 0 0 6px; }
          .muted { color: var(--muted); }
          .topic .level { white-space: nowrap; }
          .inst { border-top: 1px solid var(--line); padding: 6px 2px; cursor: pointer; }
          .inst:first-of-type { border-top: 0; }
          .inst:hover { background: var(--card); }
          .inst .head { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: baseline; }
          .inst .rule { font-weight: 600; overflow-wrap: anywhere; }
          .inst .value { margin-left: auto; font-variant-numeric: tabular-nums; text-align: right; overflow-wrap: anywhere; }
          .inst .why { color: var(--muted); overflow-wrap: anywhere; }
          .inst .held { color: var(--pend); }
          .leaf { display: inline-block; margin-right: 0.8em; white-space: nowrap; }
          .leaf.true { color: var(--fire); } .leaf.unknown { color: var(--muted); font-style: italic; }
          .timeline { display: block; width: 100%; height: 8px; margin-top: 4px; border-radius: 2px; background: var(--card); }
          .details { margin: 6px 0 2px; padding: 6px 8px; background: var(--card); border-radius: 6px; cursor: auto; }
          .details pre { margin: 4px 0; padding: 6px; overflow-x: auto; font-size: 12px; border: 1px solid var(--line);
                         border-radius: 4px; white-space: pre; max-width: 100%; }
          .details dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 10px; margin: 4px 0; }
          .details dt { color: var(--muted); } .details dd { margin: 0; overflow-wrap: anywhere; }
          .sensor { border-top: 1px solid var(--line); padding: 6px 0; }
          .sensor:first-of-type { border-top: 0; }
          .sensor .head { display: flex; gap: 8px; align-items: baseline; }
          .sensor .now { margin-left: auto; font-size: 18px; font-variant-numeric: tabular-nums; white-space: nowrap; }
          .chart { display: block; width: 100%; height: 96px; }
          .chart text { font-size: 10px; fill: var(--muted); }
          .row { display: grid; grid-template-columns: minmax(0, 1fr) auto auto; gap: 8px; align-items: baseline;
                 border-top: 1px solid var(--line); padding: 4px 0; }
          .row:first-of-type { border-top: 0; }
          .command { grid-template-columns: auto minmax(0, 1fr) auto; }
          .command .why { grid-column: 1 / -1; color: var(--muted); overflow-wrap: anywhere; }
          .command .chip { white-space: normal; max-width: 12em; text-align: center; }
          .legend { font-size: 12px; color: var(--muted); }
          .legend span { margin-right: 10px; white-space: nowrap; }
        </style>
        </head>
        <body>
        <header><h1>sensor-pipeline</h1><span id="status">connecting…</span><span id="summary"></span></header>
        <main>
          <div class="column">
            <section><h2>Rule instances</h2>
              <div class="legend"><span>timeline: last 2 minutes</span><span style="color:var(--fire)">■ firing</span>
              <span style="color:var(--pend)">■ pending</span><span style="color:var(--ok)">■ ok</span><span>click one to see why</span></div>
              <div id="instances"></div></section>
            <section><h2>Last commands</h2><div id="commands"></div></section>
          </div>
          <div class="column">
            <section><h2>Sensors</h2>
              <div class="legend"><span>- - - fires</span><span>· · · clears</span><span style="color:var(--fire)">▮ firing</span></div>
              <div id="sensors"></div></section>
            <section><h2>Actuators</h2><div id="actuators"></div></section>
          </div>
        </main>
        <script id="initial" type="application/json">INITIAL_SNAPSHOT</script>
        <script id="explained" type="application/json">INITIAL_EXPLAINED</script>
        <script>
        "use strict";
        const SVG = "http://www.w3.org/2000/svg", WINDOW = 120000;
        const open = new Set(), explained = new Map(), seen = new Set();
        // `/?rule=ID` (the link in an Alertmanager alert) opens that rule's instances.
        const focus = new URLSearchParams(location.search).get("rule");
        const preloaded = JSON.parse(document.getElementById("explained").textContent);
        if (preloaded && preloaded.id) explained.set(preloaded.id, preloaded);
        let last = null;
        const text = (value) => value === null || value === undefined ? "–" : String(value);
        const clock = (ms) => new Date(ms).toLocaleTimeString();
        const round = (v) => typeof v === "number" ? String(Math.round(v * 100) / 100) : text(v);
        // Reasons carry full-precision numbers (an average's 25.344390243902435); two decimals read better.
        const tidy = (reason) => text(reason).replace(/-?\d+\.\d{3,}/g, (n) => String(Math.round(Number(n) * 100) / 100));
        function el(tag, className, content) {
          const node = document.createElement(tag);
          if (className) node.className = className;
          if (content !== undefined) node.textContent = content;
          return node;
        }
        function svg(tag, attributes) {
          const node = document.createElementNS(SVG, tag);
          for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
          return node;
        }
        // Topics break after "/" only, never at a hyphen.
        function topic(value) {
          const span = el("span", "topic");
          value.split("/").forEach((part, i, all) => {
            span.appendChild(el("span", "level", part + (i < all.length - 1 ? "/" : "")));
            if (i < all.length - 1) span.appendChild(document.createElement("wbr"));
          });
          return span;
        }
        function labels(object) { return Object.entries(object || {}).map(([k, v]) => k + "=" + v).join(", "); }
        const units = new Map();
        function unitOf(topicName) { return units.get(topicName) || ""; }
        const phaseColor = { firing: "var(--fire)", pending: "var(--pend)", inactive: "var(--ok)" };
        // The instance's phases over the last two minutes, as coloured segments.
        function timeline(instance, now) {
          const bar = svg("svg", { class: "timeline", viewBox: "0 0 1000 8", preserveAspectRatio: "none" });
          const start = now - WINDOW, phases = instance.phases || [];
          let current = "inactive";
          for (const [t, p] of phases) if (t <= start) current = p;
          const changes = [[start, current], ...phases.filter(([t]) => t > start)];
          changes.forEach(([t, p], i) => {
            const end = i + 1 < changes.length ? changes[i + 1][0] : now;
            const x = (t - start) / WINDOW * 1000, w = Math.max(1, (end - t) / WINDOW * 1000);
            bar.appendChild(svg("rect", { x: x.toFixed(1), y: 0, width: w.toFixed(1), height: 8, fill: phaseColor[p] || "var(--muted)", opacity: p === "inactive" ? 0.35 : 0.9 }));
          });
          return bar;
        }
        function valueOf(instance) {
          const list = instance.conditions || instance.members;
          if (!list) {
            const w = instance.window;
            const unit = (instance.thresholds && instance.thresholds[0]) ? unitOf(instance.thresholds[0].topic) : "";
            if (w) {
              const value = w.value === null || w.value === undefined ? "unknown" : round(w.value) + (unit && !w.window.startsWith("rate") && !w.window.startsWith("at_least") && !w.window.startsWith("count") ? " " + unit : "");
              const shown = el("span", "value", w.window + " = " + value + " · " + w.samples + " readings");
              if (w.unknown_because) shown.title = w.unknown_because;
              return shown;
            }
            return el("span", "value", "now " + round(instance.last_value) + (unit ? " " + unit : ""));
          }
          const span = el("span", "value");
          for (const c of list) {
            const part = el("span", "leaf " + c.truth, (c.name || c.topic) + " " + round(c.value) + (unitOf(c.topic) ? " " + unitOf(c.topic) : "") + (c.truth === "unknown" ? " ?" : ""));
            part.dataset.truth = c.truth;
            if (c.unknown_because) part.title = c.unknown_because;
            span.appendChild(part);
          }
          return span;
        }
        function heldText(instance, now) {
          if (!instance.held_by) return null;
          const until = instance.held_until ? " until " + clock(instance.held_until) + " (in " + Math.max(0, Math.round((instance.held_until - now) / 1000)) + " s)" : "";
          const what = { min_on: "min_on keeps it firing", min_off: "min_off keeps it off", cooldown: "cooldown holds the change",
                         keep_firing_for: "keep_firing_for keeps it firing", max_transitions: "max_transitions holds it",
                         flapping: "flapping: held as the rule says" }[instance.held_by] || instance.held_by;
          return what + until;
        }
        function details(instance, now) {
          const box = el("div", "details");
          box.addEventListener("click", (e) => e.stopPropagation());
          const info = el("dl");
          const add = (k, v) => { info.appendChild(el("dt", null, k)); info.appendChild(el("dd", null, v)); };
          add("state", instance.state + (instance.since ? " since " + clock(instance.since) : ""));
          add("last reason", tidy(instance.last_reason));
          add("next timer", instance.next_timer_due ? clock(instance.next_timer_due) + " (in " + Math.max(0, Math.round((instance.next_timer_due - now) / 1000)) + " s)" : "none");
          add("last reading", instance.last_reading_at ? clock(instance.last_reading_at) : "none");
          if (instance.window) add("window", instance.window.window + ": " + round(instance.window.value) + " over " + instance.window.samples + " readings" + (instance.window.unknown_because ? " (unknown: " + instance.window.unknown_because + ")" : ""));
          for (const c of (instance.conditions || instance.members || [])) {
            add(c.name || c.topic, round(c.value) + " → " + c.truth + (c.unknown_because ? " (" + c.unknown_because + ")" : ""));
          }
          box.appendChild(info);
          const source = el("div", "muted", "loading the rule…");
          const pre = el("pre");
          box.appendChild(source); box.appendChild(pre);
          const show = (rule) => {
            source.textContent = rule.source ? "rule " + rule.id + " — " + rule.source : "rule " + rule.id;
            pre.textContent = rule.yaml || "(the rule file could not be read)";
          };
          if (explained.has(instance.rule)) show(explained.get(instance.rule));
          else fetch("api/explain?rule=" + encodeURIComponent(instance.rule)).then((r) => r.json()).then((rule) => { explained.set(instance.rule, rule); show(rule); }).catch(() => { source.textContent = "the engine did not answer"; });
          return box;
        }
        function drawInstances(snapshot) {
          const box = document.getElementById("instances");
          box.replaceChildren();
          const order = { firing: 0, pending: 1, inactive: 2 };
          const list = [...snapshot.instances].sort((a, b) => order[a.state] - order[b.state] || a.rule.localeCompare(b.rule));
          if (list.length === 0) box.appendChild(el("div", "muted", "no rule instance yet (no reading has matched a rule's topic)"));
          for (const i of list) {
            if (!seen.has(i.key)) { seen.add(i.key); if (i.rule === focus) open.add(i.key); }
            const row = el("div", "inst");
            row.dataset.key = i.key; row.dataset.state = i.state;
            const head = el("div", "head");
            head.appendChild(el("span", "chip " + i.state, i.state === "inactive" ? "ok" : i.state));
            head.appendChild(el("span", "rule", i.rule));
            head.appendChild(el("span", "muted", labels(i.labels)));
            if (i.stale) head.appendChild(el("span", "chip other", "stale"));
            head.appendChild(valueOf(i));
            row.appendChild(head);
            const held = heldText(i, snapshot.now);
            if (held) row.appendChild(el("div", "held", held));
            if (i.last_reason) row.appendChild(el("div", "why", "last: " + tidy(i.last_reason) + (i.last_transition_at ? " · " + clock(i.last_transition_at) : "")));
            row.appendChild(timeline(i, snapshot.now));
            if (open.has(i.key)) row.appendChild(details(i, snapshot.now));
            row.addEventListener("click", () => { if (open.has(i.key)) open.delete(i.key); else open.add(i.key); drawInstances(last); });
            box.appendChild(row);
          }
        }
        // A sensor's last two minutes, with the thresholds (dashed) and clear levels (dotted) of the rules
        // that read it, and the periods one of them fired shaded.
        function chart(sensor, instances, now) {
          const width = 600, height = 96, left = 34, right = 6, top = 6, bottom = 14;
          const plot = svg("svg", { class: "chart", viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none" });
          const start = now - WINDOW;
          const lines = [];
          for (const i of instances) for (const t of (i.thresholds || [])) {
            if (t.topic !== sensor.topic) continue;
            const name = i.rule + (t.window ? " (" + t.window + ")" : "");
            for (const k of ["above", "below"]) if (typeof t[k] === "number") lines.push({ v: t[k], kind: "fire", name: name + (k === "above" ? " > " : " < ") + t[k] });
            for (const k of ["between", "outside"]) if (Array.isArray(t[k])) for (const v of t[k]) lines.push({ v, kind: "fire", name: name + " " + k + " " + t[k].join("–") });
            if (typeof t.clear === "number") lines.push({ v: t.clear, kind: "clear", name: name + " clears at " + t.clear });
          }
          const values = sensor.values || [];
          const all = values.concat(lines.map((l) => l.v));
          if (all.length === 0) return plot;
          let low = Math.min(...all), high = Math.max(...all);
          if (high - low < 1e-9) { low -= 1; high += 1; }
          const pad = (high - low) * 0.08; low -= pad; high += pad;
          const x = (t) => left + (t - start) / WINDOW * (width - left - right);
          const y = (v) => top + (high - v) / (high - low) * (height - top - bottom);
          // Firing periods of the instances that read this sensor.
          for (const i of instances) {
            if (!(i.thresholds || []).some((t) => t.topic === sensor.topic)) continue;
            let firingFrom = null;
            const phases = i.phases || [];
            for (const [t, p] of phases) {
              if (p === "firing" && firingFrom === null) firingFrom = t;
              else if (p !== "firing" && firingFrom !== null) { shade(firingFrom, t); firingFrom = null; }
            }
            if (firingFrom !== null) shade(firingFrom, now);
          }
          function shade(from, to) {
            const a = Math.max(x(from), left), b = Math.min(x(to), width - right);
            if (b > a) plot.appendChild(svg("rect", { x: a, y: top, width: b - a, height: height - top - bottom, fill: "var(--fire)", opacity: 0.15 }));
          }
          plot.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: "var(--line)" }));
          for (const [v, anchor] of [[high - pad, "hanging"], [low + pad, "auto"]]) {
            const label = svg("text", { x: left - 3, y: y(v), "text-anchor": "end", "dominant-baseline": anchor === "hanging" ? "hanging" : "auto" });
            label.textContent = round(v); plot.appendChild(label);
          }
          for (const [t, s] of [[start, "−2 min"], [start + WINDOW / 2, "−1 min"], [now, "now"]]) {
            const label = svg("text", { x: Math.min(x(t), width - right), y: height - 2, "text-anchor": t === now ? "end" : t === start ? "start" : "middle" });
            label.textContent = s; plot.appendChild(label);
          }
          for (const l of lines) {
            const line = svg("line", { x1: left, x2: width - right, y1: y(l.v), y2: y(l.v), stroke: l.kind === "fire" ? "var(--fire)" : "var(--ok)",
                                       "stroke-dasharray": l.kind === "fire" ? "6 4" : "2 3", "stroke-width": 1, "vector-effect": "non-scaling-stroke" });
            const title = svg("title", {}); title.textContent = l.name; line.appendChild(title);
            plot.appendChild(line);
          }
          if (values.length > 0) {
            const points = sensor.times.map((t, i) => x(t).toFixed(1) + "," + y(values[i]).toFixed(1));
            plot.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: "currentColor", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
          }
          return plot;
        }
        function drawSensors(snapshot) {
          const box = document.getElementById("sensors");
          box.replaceChildren();
          if (snapshot.sensors.length === 0) box.appendChild(el("div", "muted", "no reading yet"));
          for (const s of snapshot.sensors) {
            if (s.unit) units.set(s.topic, s.unit);
            const card = el("div", "sensor");
            card.dataset.topic = s.topic;
            const head = el("div", "head");
            head.appendChild(topic(s.topic));
            head.appendChild(el("span", "now", round(s.last) + (s.unit ? " " + s.unit : "")));
            card.appendChild(head);
            if ((s.values || []).length > 0) card.appendChild(chart(s, snapshot.instances, snapshot.now));
            box.appendChild(card);
          }
        }
        function drawActuators(snapshot) {
          const box = document.getElementById("actuators");
          box.replaceChildren();
          if (snapshot.actuators.length === 0) box.appendChild(el("div", "muted", "no actuator has reported yet"));
          for (const a of snapshot.actuators) {
            const row = el("div", "row");
            row.dataset.topic = a.topic;
            row.appendChild(topic(a.topic));
            const state = a.state.toLowerCase();
            row.appendChild(el("span", "chip " + (["on", "open"].includes(state) ? "on" : ["off", "closed"].includes(state) ? "off" : "other"), a.state));
            row.appendChild(el("span", "muted", "since " + clock(a.at)));
            box.appendChild(row);
          }
        }
        function drawCommands(snapshot) {
          const box = document.getElementById("commands");
          box.replaceChildren();
          if (snapshot.commands.length === 0) box.appendChild(el("div", "muted", "no command yet"));
          for (const c of snapshot.commands) {
            const row = el("div", "row command");
            row.appendChild(el("span", "muted", clock(c.ts)));
            row.appendChild(topic(c.topic));
            row.appendChild(el("span", "chip other", c.state));
            row.appendChild(el("div", "why", "why: " + tidy(c.reason) + " (rule " + c.rule + ")"));
            box.appendChild(row);
          }
        }
        function draw(snapshot) {
          last = snapshot;
          const status = document.getElementById("status");
          const broker = snapshot.broker || { connected: true };
          status.textContent = broker.connected ? "live · " + clock(snapshot.now) : broker.problem + " · " + clock(snapshot.now);
          status.className = broker.connected ? "" : "down";
          const count = (s) => snapshot.instances.filter((i) => i.state === s).length;
          const summary = document.getElementById("summary");
          summary.replaceChildren(el("span", "chip firing", count("firing") + " firing"), document.createTextNode(" "),
                                  el("span", "chip pending", count("pending") + " pending"), document.createTextNode(" "),
                                  el("span", "chip inactive", count("inactive") + " ok"));
          drawSensors(snapshot);
          drawInstances(snapshot);
          drawActuators(snapshot);
          drawCommands(snapshot);
          // For tests and the curious: elements whose content is wider than they are (a cut column).
          // Anything that reaches past its section's right edge (a <pre> scrolls by itself and is left out).
          const cut = [];
          for (const section of document.querySelectorAll("section")) {
            const edge = section.getBoundingClientRect().right;
            for (const e of section.querySelectorAll("*")) {
              if (e.closest("pre")) continue;
              if (e.getBoundingClientRect().right > edge + 1) cut.push((e.textContent || e.tagName).slice(0, 40));
            }
          }
          if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 1) cut.push("the page scrolls sideways");
          document.body.dataset.cut = cut.join(" | ");
        }
        draw(JSON.parse(document.getElementById("initial").textContent));
        const events = new EventSource("events");
        events.addEventListener("snapshot", (event) => draw(JSON.parse(event.data)));
        events.onerror = () => { document.getElementById("status").textContent = "disconnected, retrying…"; };
        </script>
        </body>
        </html>
        """#
}
