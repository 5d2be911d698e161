// The dashboard (scripts/mesh-dashboard.ts) from the compiled bundle, rebuilt first when a source
// changed; takes the same flags. mesh:up starts its dashboard with it: under tsx's loader each
// start cost ~0.3 s of CPU more on an idle machine and seconds on a loaded one.
import { runEntry } from "./bundle.mjs";

await runEntry("scripts/mesh-dashboard.ts");
