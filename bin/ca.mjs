// `npm run ca`: the CA's command line (ca/cli.ts) from the compiled bundle, rebuilt first
// when a source changed. `node --import tsx ca/cli.ts` runs the same sources uncompiled.
import { runEntry } from "./bundle.mjs";

await runEntry("ca/cli.ts");
