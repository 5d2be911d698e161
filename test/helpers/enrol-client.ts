// Enrols a client identity (a certificate that serves nothing, like mesh:up's edge) with a
// one-time token from MESH_ENROL_TOKEN, over EST, into a state folder of its own:
//   node --import tsx test/helpers/enrol-client.ts <caUrl> <dns> <dir> [lifetime]
// Used where a test's client runs on another (namespaced) host than the CA.
import { enrolWithToken, parseToken } from "../../services/mesh/identity-agent/bootstrap.ts";
import { statePaths } from "../../services/mesh/identity-agent/state-folder.ts";

const [caUrl, dns, dir, lifetime] = process.argv.slice(2);
if (!caUrl || !dns || !dir) {
  process.stderr.write("usage: enrol-client.ts <caUrl> <dns> <dir> [lifetime]\n");
  process.exit(2);
}
const token = parseToken(process.env.MESH_ENROL_TOKEN ?? "", "MESH_ENROL_TOKEN");
delete process.env.MESH_ENROL_TOKEN;
const e = await enrolWithToken({ caUrl, token, dns, paths: statePaths(dir), lifetime });
process.stdout.write(
  `${JSON.stringify({ event: "identity.enrolled", serial: e.facts.serial, notAfter: e.facts.notAfter })}\n`,
);
