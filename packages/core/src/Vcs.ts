import { Context, type Effect, type Redacted, Schema } from "effect"

export interface Credentials {
  readonly username?: string
  readonly token: Redacted.Redacted<string>
}

export interface CheckoutOptions {
  readonly url: string
  /** Branch, tag or commit SHA; the remote's default branch when absent. */
  readonly ref?: string
  /** Directory to clone into. */
  readonly into: string
  /** Shallow clone depth. */
  readonly depth?: number
  readonly credentials?: Credentials
}

export interface Checkout {
  readonly dir: string
  readonly commit: string
  readonly branch: string | null
}

export interface Author {
  readonly name: string
  readonly email: string
}

export type CommitOutcome =
  | { readonly _tag: "committed"; readonly commit: string }
  | { readonly _tag: "nothing-to-commit" }

export interface RepoInfo {
  readonly commit: string
  readonly branch: string | null
  /** The origin URL with any credentials removed. */
  readonly remote: string | null
}

/** A git operation failed; the message has credentials masked. */
export class VcsError extends Schema.TaggedError<VcsError>()("VcsError", {
  operation: Schema.String,
  message: Schema.String
}) {}

/** Authentication was refused by the remote. */
export class VcsAuthError extends Schema.TaggedError<VcsAuthError>()("VcsAuthError", {
  operation: Schema.String,
  message: Schema.String
}) {}

/** The remote refused the push (for example not a fast-forward). */
export class PushRejected extends Schema.TaggedError<PushRejected>()("PushRejected", {
  branch: Schema.String,
  message: Schema.String
}) {}

/** Version control for repository jobs. Credentials never appear in logs, errors or argv. */
export class Vcs extends Context.Service<
  Vcs,
  {
    readonly checkout: (options: CheckoutOptions) => Effect.Effect<Checkout, VcsError | VcsAuthError>
    readonly createBranch: (dir: string, name: string) => Effect.Effect<void, VcsError>
    readonly commitAll: (
      dir: string,
      options: { readonly message: string; readonly author: Author }
    ) => Effect.Effect<CommitOutcome, VcsError>
    readonly push: (
      dir: string,
      branch: string,
      options: { readonly setUpstream?: boolean; readonly credentials?: Credentials }
    ) => Effect.Effect<void, VcsError | VcsAuthError | PushRejected>
    readonly changedFiles: (dir: string, base: string, head: string) => Effect.Effect<ReadonlyArray<string>, VcsError>
    readonly repoInfo: (dir: string) => Effect.Effect<RepoInfo, VcsError>
  }
>()("@runlane/core/Vcs") {}
