// Parse every ```mermaid block of Markdown files with the real Mermaid parser.
//
//     node .ci/work/mermaid/check.mjs FILE.md...
//
// tests/tools/install-mermaid copies this file beside the pinned packages it installs (tests/run
// runs it). Prints one JSON line per block: {"file", "index", "ok", "type", "error"}; exits 1 when
// a block does not parse, 2 when the packages are missing. Mermaid's parser imports DOMPurify,
// which needs a window: jsdom gives it one (no browser, nothing rendered, nothing fetched).
import { readFileSync } from "node:fs";

let JSDOM, mermaid;
try {
  ({ JSDOM } = await import("jsdom"));
  const dom = new JSDOM("<!doctype html><html><body></body></html>");
  globalThis.window = dom.window;
  globalThis.document = dom.window.document;
  ({ default: mermaid } = await import("mermaid"));
} catch (error) {
  console.error(`mermaid check: ${error.message}; run: bash tests/tools/install-mermaid`);
  process.exit(2);
}

const fence = /^```mermaid\n([\s\S]*?)^```$/gm;
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  let index = 0;
  for (const match of text.matchAll(fence)) {
    const result = { file, index: index++, ok: true, type: null, error: null };
    try {
      const parsed = await mermaid.parse(match[1]);
      result.type = parsed.diagramType;
    } catch (error) {
      result.ok = false;
      result.error = String(error.message || error);
      failed = true;
    }
    console.log(JSON.stringify(result));
  }
}
process.exit(failed ? 1 : 0);
