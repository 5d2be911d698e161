// One mesh service (services/main.ts) from the compiled bundle, rebuilt first when a source
// changed; takes the same flags. mesh:up and the drill start services with it.
import { runEntry } from "./bundle.mjs";

await runEntry("services/main.ts");
