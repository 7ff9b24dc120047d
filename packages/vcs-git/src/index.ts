export type { GitVcsConfig } from "./GitVcs.ts"
export * as GitVcs from "./GitVcs.ts"
export { isLoopbackHost, parseRemote, type Remote, redactUrlCredentials, stripUrlCredentials } from "./RemoteUrl.ts"
