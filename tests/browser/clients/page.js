// What a Jupyter Book page does with thebe: connect to a Binder, start a kernel, run a cell.
(async () => {
  const params = new URLSearchParams(window.location.search);
  const status = document.getElementById("status");
  const api = window.thebeCore.api;
  const config = api.makeConfiguration({
    binderOptions: { binderUrl: params.get("binder"), repoProvider: "git", repo: params.get("repo"), ref: "main" },
    savedSessionOptions: { enabled: false },
    kernelOptions: { kernelName: "python3" },
  });
  try { config.events.on("status", (_evt, data) => { status.textContent += `${data.status}: ${data.message}\n`; }); } catch (e) { /* progress only */ }
  const server = api.connectToBinder(config);
  await server.ready;
  const session = await server.startNewSession(api.makeRenderMimeRegistry());
  const future = session.kernel.requestExecute({ code: "print(6*7)" });
  let out = "";
  future.onIOPub = (msg) => { if (msg.header.msg_type === "stream") out += msg.content.text; };
  await future.done;
  document.getElementById("output").textContent = out;
  window.THEBE_RESULT = { output: out, server: server.userServerUrl || "" };
})().catch((err) => { window.THEBE_ERROR = String(err && err.stack || err); });
