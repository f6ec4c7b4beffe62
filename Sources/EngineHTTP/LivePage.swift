import FileFormats
import Foundation
import Rules

/// The live page served at `/`: plain HTML, CSS and JavaScript (no build step, nothing from a CDN),
/// drawing the `snapshot` events of `/events`. Narrow screens get one column. The first snapshot is in
/// the page itself, so it shows the pipeline at once (and a headless browser sees it on load).
enum LivePage {
    /// The page with `initial` (a snapshot) embedded.
    static func html(initial: JSONValue) -> String {
        // Inside <script>, "</script>" must not appear: `<` only occurs in JSON strings, where \u003c means it.
        let embedded = initial.jsonText.replacingOccurrences(of: "<", with: "\\u003c")
        return template.replacingOccurrences(of: "INITIAL_SNAPSHOT", with: embedded)
    }

    static let template = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>sensor-pipeline</title>
        <style>
          :root { color-scheme: light dark; --muted: #888; --fire: #d33; --pend: #d90; --ok: #2a2; }
          body { font: 14px/1.4 system-ui, sans-serif; margin: 0; padding: 12px; }
          header { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
          h1 { font-size: 18px; margin: 0; }
          #status { color: var(--muted); }
          #status.down { color: #c0392b; font-weight: 600; }
          main { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; margin-top: 12px; }
          section { border: 1px solid #8884; border-radius: 8px; padding: 8px 10px; overflow-x: auto; }
          h2 { font-size: 15px; margin: 0 0 6px; }
          table { border-collapse: collapse; width: 100%; }
          td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #8882; vertical-align: middle; }
          th { color: var(--muted); font-weight: normal; }
          .num { text-align: right; font-variant-numeric: tabular-nums; }
          .firing { color: var(--fire); font-weight: bold; }
          .pending { color: var(--pend); }
          .inactive { color: var(--ok); }
          .muted { color: var(--muted); }
          td.why { min-width: 14em; }
          td.leaves { max-width: 13em; }
          .leaf { display: inline-block; white-space: nowrap; margin-right: 0.7em; }
          .leaf.true { color: var(--fire); }
          .leaf.unknown { color: var(--muted); font-style: italic; }
          @media (max-width: 600px) { td.leaves { max-width: 7em; } .leaf { white-space: normal; } }
          svg { display: block; }
        </style>
        </head>
        <body>
        <header><h1>sensor-pipeline</h1><span id="status">connecting…</span></header>
        <main>
          <section><h2>Sensors</h2><table id="sensors"><thead><tr><th>topic</th><th class="num">value</th><th>recent</th></tr></thead><tbody></tbody></table></section>
          <section><h2>Rule instances</h2><table id="instances"><thead><tr><th>rule</th><th>labels</th><th>state</th><th>value</th><th>why</th></tr></thead><tbody></tbody></table></section>
          <section><h2>Actuators</h2><table id="actuators"><thead><tr><th>topic</th><th>state</th><th>since</th></tr></thead><tbody></tbody></table></section>
          <section><h2>Last commands</h2><table id="commands"><thead><tr><th>time</th><th>topic</th><th>state</th><th>why</th></tr></thead><tbody></tbody></table></section>
        </main>
        <script id="initial" type="application/json">INITIAL_SNAPSHOT</script>
        <script>
        "use strict";
        const text = (value) => value === null || value === undefined ? "–" : String(value);
        const clock = (ms) => new Date(ms).toLocaleTimeString();
        function cell(row, content, className) {
          const td = row.insertCell();
          if (content instanceof Node) td.appendChild(content); else td.textContent = text(content);
          if (className) td.className = className;
          return td;
        }
        function fill(id, items, draw) {
          const body = document.querySelector("#" + id + " tbody");
          body.replaceChildren();
          if (items.length === 0) { cell(body.insertRow(), "nothing yet", "muted").colSpan = 5; return; }
          for (const item of items) draw(body.insertRow(), item);
        }
        function sparkline(values) {
          const ns = "http://www.w3.org/2000/svg", width = 120, height = 24;
          const svg = document.createElementNS(ns, "svg");
          svg.setAttribute("width", width); svg.setAttribute("height", height);
          if (values.length < 2) return svg;
          const low = Math.min(...values), high = Math.max(...values), span = (high - low) || 1;
          const points = values.map((v, i) =>
            (i * (width - 2) / (values.length - 1) + 1).toFixed(1) + "," + (height - 2 - (v - low) * (height - 4) / span).toFixed(1));
          const line = document.createElementNS(ns, "polyline");
          line.setAttribute("points", points.join(" "));
          line.setAttribute("fill", "none"); line.setAttribute("stroke", "currentColor"); line.setAttribute("stroke-width", "1.5");
          svg.appendChild(line);
          return svg;
        }
        function labels(object) { return Object.entries(object || {}).map(([k, v]) => k + "=" + v).join(", "); }
        // A combined rule's leaves or a group's members: name or topic, value, and its truth as a colour
        // (unknown in grey italics, with why on hover).
        function conditions(instance) {
          const list = instance.conditions || instance.members;
          if (!list) return instance.last_value;
          const span = document.createElement("span");
          for (const c of list) {
            const part = document.createElement("span");
            part.className = "leaf " + c.truth;
            part.dataset.truth = c.truth;
            const value = typeof c.value === "number" ? Math.round(c.value * 100) / 100 : text(c.value);
            part.textContent = (c.name || c.topic) + " " + value + (c.truth === "unknown" ? " ?" : "");
            if (c.unknown_because) part.title = c.unknown_because;
            span.appendChild(part);
          }
          return span;
        }
        function draw(snapshot) {
          const status = document.getElementById("status");
          const broker = snapshot.broker || { connected: true };
          status.textContent = broker.connected ? "live · " + clock(snapshot.now) : broker.problem + " · " + clock(snapshot.now);
          status.className = broker.connected ? "" : "down";
          fill("sensors", snapshot.sensors, (row, s) => {
            row.dataset.topic = s.topic;
            cell(row, s.topic);
            cell(row, typeof s.last === "number" ? Math.round(s.last * 100) / 100 : s.last, "num");
            cell(row, sparkline(s.values));
          });
          fill("instances", snapshot.instances, (row, i) => {
            cell(row, i.rule); cell(row, labels(i.labels)); cell(row, i.state, i.state);
            cell(row, conditions(i), "leaves"); cell(row, i.last_reason, "muted why");
          });
          fill("actuators", snapshot.actuators, (row, a) => {
            cell(row, a.topic); cell(row, a.state, a.state === "on" || a.state === "open" ? "firing" : ""); cell(row, clock(a.at), "muted");
          });
          fill("commands", snapshot.commands, (row, c) => {
            cell(row, clock(c.ts), "muted"); cell(row, c.topic); cell(row, c.state); cell(row, c.reason + " (" + c.rule + ")", "muted why");
          });
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
