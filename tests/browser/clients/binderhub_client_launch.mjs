// Launch through a Binder with the real @jupyterhub/binderhub-client, as a Node program would:
//   node binderhub_client_launch.mjs <binder base URL> <provider/spec/ref>
// Prints each event the client yields as one JSON line, and stops after ready or failed.
import { BinderRepository } from "@jupyterhub/binderhub-client/client.js";

// fetch-event-source reaches fetch and its timers through `window`, as in a browser.
globalThis.window = globalThis;

const [base, providerSpec] = process.argv.slice(2);
const repo = new BinderRepository(providerSpec, new URL(`${base.replace(/\/$/, "")}/build/`));
for await (const event of repo.fetch()) {
  console.log(JSON.stringify(event));
  if (event.phase === "ready" || event.phase === "failed") {
    repo.close();
    break;
  }
}
