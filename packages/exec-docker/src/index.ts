export type { DockerExecSpec, DockerExecutorConfig, DockerSpecOptions, ImagePolicy } from "./DockerExecutor.ts"
export * as DockerExecutor from "./DockerExecutor.ts"
export { FrameDemuxer } from "./FrameDemuxer.ts"
