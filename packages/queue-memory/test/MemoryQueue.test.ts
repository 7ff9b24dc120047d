import { MemoryQueue } from "@runlane/queue-memory"
import { queueContract } from "@runlane/testkit"

queueContract("memory", () => MemoryQueue.layer())
