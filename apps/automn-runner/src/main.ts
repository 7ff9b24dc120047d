import { NodeRuntime } from "@effect/platform-node"
import { runService } from "./Service.ts"

NodeRuntime.runMain(runService())
