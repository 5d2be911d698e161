// The sidecar (services/sidecar.ts) from the compiled bundle, rebuilt first when a source
// changed; takes the same flags (npm run sidecar -- --help).
import { runEntry } from "./bundle.mjs";

await runEntry("services/sidecar.ts");
