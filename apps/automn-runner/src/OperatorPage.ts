import { MIN_SECRET_LENGTH } from "./Config.ts"
import { packageCacheSummary } from "./NodeDependencies.ts"
import type { RunnerState } from "./RunnerState.ts"

/** Plain server-rendered HTML for `GET /` and the UI routes: no script, no build step. */
export const escapeHtml = (value: unknown): string =>
  value === null || value === undefined
    ? ""
    : String(value)
        .replace(/&/g, "&amp;")
        .replace(/</g, "&lt;")
        .replace(/>/g, "&gt;")
        .replace(/"/g, "&quot;")
        .replace(/'/g, "&#39;")

const STYLE = `
  body { font-family: system-ui, sans-serif; margin: 0; background: #f8fafc; color: #0f172a; }
  header { padding: 1.5rem 2rem; background: #e2e8f0; }
  main { padding: 2rem; max-width: 720px; margin: 0 auto; }
  h1 { margin: 0; font-size: 1.75rem; }
  section { background: #fff; border: 1px solid #cbd5e1; border-radius: 12px; padding: 1.5rem; margin-bottom: 1.5rem; }
  label { display: block; margin-bottom: 0.5rem; font-weight: 600; }
  input[type="password"], input[type="text"] { width: 100%; padding: 0.6rem; border-radius: 8px; border: 1px solid #94a3b8; box-sizing: border-box; }
  button { padding: 0.6rem 1.2rem; border-radius: 8px; border: none; background: #0284c7; color: #fff; font-weight: 600; cursor: pointer; }
  .muted { color: #475569; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 1rem; margin-bottom: 1.5rem; }
  .card { background: #fff; border: 1px solid #cbd5e1; border-radius: 10px; padding: 1rem; }
  .card h3 { margin: 0 0 0.4rem; font-size: 0.85rem; text-transform: uppercase; color: #0369a1; }
  .card p { margin: 0; word-break: break-all; }
  .alert { padding: 0.8rem 1rem; border-radius: 8px; margin-bottom: 1.5rem; }
  .alert-error { background: #fee2e2; color: #991b1b; }
  .alert-success { background: #dcfce7; color: #166534; }
  .locked { color: #047857; }
`

const page = (body: string): string => `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Automn Runner</title>
    <style>${STYLE}</style>
  </head>
  <body>
    <header><h1>Automn Runner</h1></header>
    <main>${body}</main>
  </body>
</html>
`

const cacheText = (workdirDir: string): string => {
  const { scripts, packages } = packageCacheSummary(workdirDir)
  return packages > 0
    ? `${packages} package${packages === 1 ? "" : "s"} across ${scripts} script${scripts === 1 ? "" : "s"}`
    : "No cached packages"
}

const card = (id: string, title: string, value: string) =>
  `<div class="card" data-card="${id}"><h3>${escapeHtml(title)}</h3><p>${escapeHtml(value)}</p></div>`

export interface PageMessage {
  readonly error?: string | undefined
  readonly success?: string | undefined
}

export const renderHomePage = (state: RunnerState, message: PageMessage = {}): string => {
  const summary = state.summary()
  const config = state.config
  let body = ""
  if (message.error !== undefined)
    body += `<div class="alert alert-error" role="alert">${escapeHtml(message.error)}</div>`
  else if (message.success !== undefined)
    body += `<div class="alert alert-success" role="status">${escapeHtml(message.success)}</div>`

  body += `<div class="cards">
    ${card("runner-id", "Runner ID", summary.runnerId ?? "not configured")}
    ${card("host-url", "Host URL", summary.hostUrl ?? "not configured")}
    ${card("endpoint", "Endpoint", summary.endpointUrl ?? "not configured")}
    ${card("secret-source", "Secret source", summary.secretSource === "env" ? "Environment" : summary.secretConfigured ? "Stored" : "Not set")}
    ${card("locked-since", "Locked since", state.lockedAt ?? "Not locked")}
    ${card("last-registration", "Last registration", summary.registeredAt ?? summary.lastRegistrationAttempt ?? "Never")}
  </div>`

  if (state.secret === null && state.secretConfigurable) {
    body += `<section id="register">
      <h2>Register with Automn</h2>
      <p class="muted">Enter the runner secret provided by your Automn host to register this runner.</p>
      <form method="post" action="/ui/register">
        <label for="secret">Runner secret</label>
        <input type="password" id="secret" name="secret" required minlength="${MIN_SECRET_LENGTH}" autocomplete="off" />
        <div style="margin-top: 1.25rem;"><button type="submit">Register runner</button></div>
      </form>
    </section>`
  } else if (state.secret === null) {
    body += `<section id="secret-external">
      <h2>Secret managed externally</h2>
      <p class="muted">The runner secret is provided via environment variables. No changes can be made from this interface.</p>
    </section>`
  } else if (!state.locked) {
    const lastError =
      summary.lastRegistrationError === null
        ? ""
        : `<div class="alert alert-error">${escapeHtml(summary.lastRegistrationError)}</div>`
    body += `<section id="pending">
      <h2>Registration pending</h2>
      ${lastError}
      <p class="muted">The runner secret has been stored. Registration will complete when the host acknowledges this runner. The runner retries automatically; you can also <a href="/ui/reregister">trigger a retry now</a>.</p>
    </section>`
  } else {
    const lastError =
      summary.lastRegistrationError === null ? "" : ` (error: ${escapeHtml(summary.lastRegistrationError)})`
    body += `<section id="locked">
      <h2 class="locked">Runner locked</h2>
      <p class="muted">This runner successfully registered with the host and is now locked. To rotate secrets, use the documented reset procedure.</p>
      <p class="muted" id="host-status">Last host response: ${escapeHtml(summary.lastRegistrationStatus ?? "unknown")}${lastError}</p>
    </section>`
  }

  if (!state.locked) {
    if (state.executablesConfigurable()) {
      const fields = (
        [
          ["node", "Node executable", "node"],
          ["python", "Python executable", "python3"],
          ["powershell", "PowerShell executable", "pwsh"]
        ] as const
      )
        .map(([key, label, placeholder]) => {
          const managed = state.executableIsEnvManaged(key)
          return `<label for="runtime-${key}">${label}${managed ? ' <span class="muted">(managed via environment)</span>' : ""}</label>
            <input type="text" id="runtime-${key}" name="${key}" value="${escapeHtml(state.executables[key] ?? "")}" placeholder="${placeholder}" autocomplete="off"${managed ? " disabled" : ""} />
            <p class="muted">${managed ? "Managed via environment variables." : "Leave blank to use the default command from PATH."}</p>`
        })
        .join("")
      body += `<section id="runtime-executables">
        <h2>Runtime executables</h2>
        <form method="post" action="/ui/runtime-executables">${fields}
          <div style="margin-top: 1.25rem;"><button type="submit">Save executables</button></div>
        </form>
      </section>`
    } else {
      body += `<section id="runtime-executables"><h2>Runtime executables</h2><p class="muted">Executable paths are managed via environment variables.</p></section>`
    }
  }

  body += `<section id="package-cache">
    <h2>Package cache</h2>
    <p class="muted">${cacheText(config.workdirDir)}. Node scripts' npm dependencies are installed on first use.</p>
    <form method="post" action="/ui/package-cache/clear"><button type="submit">Clear package cache</button></form>
  </section>
  <section id="diagnostics">
    <h2>Diagnostics</h2>
    <ul class="muted">
      <li>Version: ${escapeHtml(config.displayVersion ?? "unknown")}</li>
      <li>Host URL: ${escapeHtml(summary.hostUrl ?? "not configured")}</li>
      <li>Endpoint URL: ${escapeHtml(summary.endpointUrl ?? "not configured")}</li>
      <li>Heartbeat interval: ${config.heartbeatInterval > 0 ? config.heartbeatInterval : "disabled"} ms</li>
      <li>Scripts directory: ${escapeHtml(config.scriptsDir)}</li>
      <li>Work directory: ${escapeHtml(config.workdirDir)}</li>
    </ul>
  </section>`
  return page(body)
}

export const notFoundPage = (method: string, path: string): string =>
  `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Error</title>
</head>
<body>
<pre>Cannot ${escapeHtml(method)} ${escapeHtml(path)}</pre>
</body>
</html>
`
