import { existsSync } from "node:fs"
import { requireService } from "@runlane/testkit"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { FakeHost, RunnerProcess } from "./harness.ts"

const CHROMIUM = "/usr/bin/chromium"
const available = await requireService(
  "Debian chromium (/usr/bin/chromium; scripts/setup.d/30-chromium.sh)",
  async () => existsSync(CHROMIUM)
)

describe.skipIf(!available)("operator page in headless Chromium", () => {
  const host = new FakeHost()
  let browser: Browser
  let runner: RunnerProcess
  const SECRET = "browser-secret-eeeeeeee"

  beforeAll(async () => {
    await host.start()
    host.runners.set("ui-runner", SECRET)
    runner = await new RunnerProcess({
      AUTOMN_HOST_URL: host.url,
      AUTOMN_RUNNER_ID: "ui-runner",
      AUTOMN_RUNNER_PUBLIC_URL: "http://127.0.0.1:3030",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1",
      AUTOMN_RUNNER_VERSION: "0.2.16"
    }).start()
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
  })
  afterAll(async () => {
    await browser?.close()
    await runner?.dispose()
    await host.stop()
  })

  it("shows the secret form before registration and the locked status view after it", async () => {
    const page = await browser.newPage()
    const response = await page.goto(runner.url)
    expect(response?.headers()["content-type"]).toBe("text/html; charset=utf-8")
    expect(await page.title()).toBe("Automn Runner")
    expect(await page.locator('[data-card="runner-id"] p').textContent()).toBe("ui-runner")
    expect(await page.locator('[data-card="endpoint"] p').textContent()).toBe("http://127.0.0.1:3030/api/run")
    expect(await page.locator('[data-card="secret-source"] p').textContent()).toBe("Not set")
    const input = page.locator('form[action="/ui/register"] input[name="secret"]')
    expect(await input.getAttribute("type")).toBe("password")
    expect(await input.getAttribute("minlength")).toBe("12")
    expect(await page.locator("#runtime-executables").count()).toBe(1)

    // the browser refuses a short secret before anything is sent
    await input.fill("short")
    await page.locator('form[action="/ui/register"] button[type="submit"]').click()
    expect(await input.evaluate((el) => (el as unknown as { validity: { tooShort: boolean } }).validity.tooShort)).toBe(
      true
    )
    expect(host.registrations).toHaveLength(0)

    await input.fill(SECRET)
    await Promise.all([
      page.waitForURL(`${runner.url}/ui/register`),
      page.locator('button[type="submit"]').first().click()
    ])
    expect(await page.locator(".alert-success").textContent()).toBe(
      "Registration request sent. Awaiting confirmation from host."
    )
    expect(await page.locator("#locked h2").textContent()).toBe("Runner locked")
    expect(await page.locator("#host-status").textContent()).toBe("Last host response: ok")
    expect(await page.locator('form[action="/ui/register"]').count()).toBe(0)
    expect(await page.locator("#runtime-executables").count()).toBe(0)
    expect(host.reasons("ui-runner")).toEqual(["initial"])

    // the status view on a fresh load, and a manual re-registration
    await page.goto(runner.url)
    expect(await page.locator('[data-card="secret-source"] p').textContent()).toBe("Stored")
    expect(await page.locator('[data-card="locked-since"] p').textContent()).not.toBe("Not locked")
    await page.goto(`${runner.url}/ui/reregister`)
    expect(await page.locator(".alert-success").textContent()).toBe("Registration attempt sent to host.")
    expect(host.reasons("ui-runner")).toEqual(["initial", "manual"])
    await page.close()
  })

  it("shows the pending view with the host's error when the host refuses the secret", async () => {
    const other = await new RunnerProcess({
      AUTOMN_HOST_URL: host.url,
      AUTOMN_RUNNER_ID: "ui-runner",
      AUTOMN_RUNNER_PUBLIC_URL: "http://127.0.0.1:3030",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    }).start()
    try {
      const page = await browser.newPage()
      await page.goto(other.url)
      await page.locator('input[name="secret"]').fill("not-the-right-secret")
      await Promise.all([
        page.waitForURL(`${other.url}/ui/register`),
        page.locator('button[type="submit"]').first().click()
      ])
      expect(await page.locator(".alert-error").first().textContent()).toBe("Invalid runner secret")
      expect(await page.locator("#pending h2").textContent()).toBe("Registration pending")
      expect(await page.locator('#pending a[href="/ui/reregister"]').count()).toBe(1)
      await page.close()
    } finally {
      await other.dispose()
    }
  })
})
