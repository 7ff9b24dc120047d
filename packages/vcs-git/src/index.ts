export type { GitVcsConfig } from "./GitVcs.ts"
export * as GitVcs from "./GitVcs.ts"
export { isLoopbackHost, parseRemote, type Remote, redactUrlCredentials, stripUrlCredentials } from "./RemoteUrl.ts"
export {
  branchFor,
  CommandFailed,
  type ExtraSpec,
  type RepoboxInput,
  type RepoboxResult,
  type RepoSource,
  RepositoryJobError,
  type RepositoryJobEvent,
  type RepositoryJobInput,
  type RepositoryJobResult,
  runRepoboxFlow,
  runRepositoryJob
} from "./RepositoryJob.ts"
export type { JobWorkspace, WorkspaceConfig } from "./Workspace.ts"
export * as Workspace from "./Workspace.ts"
