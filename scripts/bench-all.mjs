// Runs every `bench:<name>` script of the root package.json in turn (`pnpm bench`).
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"

const scripts = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).scripts
const build = spawnSync("pnpm", ["build"], { stdio: "inherit" })
if (build.status !== 0) process.exit(build.status ?? 1)
let failed = 0
for (const [name, command] of Object.entries(scripts)) {
  if (!name.startsWith("bench:")) continue
  const run = command.replace(/^pnpm build && /, "")
  console.error(`\n# ${name}: ${run}`)
  const r = spawnSync(run, { stdio: "inherit", shell: true })
  if (r.status !== 0) failed++
}
process.exit(failed === 0 ? 0 : 1)
