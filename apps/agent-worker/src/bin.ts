#!/usr/bin/env node
import { Effect } from "effect"
import { main } from "./main.ts"

const code = await Effect.runPromise(
  main(process.argv.slice(2), process.env, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text)
  })
)
process.exitCode = code
