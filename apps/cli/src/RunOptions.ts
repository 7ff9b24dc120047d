import type { Option } from "effect"

/** Everything `runlane run` was given, parsed. Executors and job kinds read what they need. */
export interface RunOptions {
  readonly command: ReadonlyArray<string>
  readonly env: Record<string, string>
  /** Names of environment variables whose values are passed as secrets and masked. */
  readonly secretNames: ReadonlyArray<string>
  readonly timeoutMs: number | undefined
  readonly tty: boolean
  readonly json: boolean
  readonly retries: number
  readonly executor: string
  readonly image: Option.Option<string>
  readonly network: Option.Option<string>
  readonly memoryBytes: number | undefined
  readonly cpus: number | undefined
  readonly namespace: Option.Option<string>
  readonly sandboxBackend: Option.Option<string>
  readonly mcpUrl: Option.Option<string>
  readonly agent: Option.Option<string>
  readonly prompt: Option.Option<string>
  readonly repo: Option.Option<string>
  readonly ref: Option.Option<string>
  readonly jobRepo: Option.Option<string>
  readonly jobRef: Option.Option<string>
  readonly pushBranch: boolean
}
