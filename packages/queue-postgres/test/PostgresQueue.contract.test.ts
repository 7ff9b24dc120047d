import { PostgresQueue } from "@runlane/queue-postgres"
import { queueContract, requireService, tcpReachable } from "@runlane/testkit"
import { Layer } from "effect"
import { freshDatabaseLayer, PG_PORT } from "./TestDatabase.ts"

const available = await requireService("PostgreSQL", () => tcpReachable(PG_PORT))

queueContract(
  "postgres",
  () => PostgresQueue.layer({ schema: "rl_contract" }).pipe(Layer.provide(freshDatabaseLayer("contract"))),
  {
    skip: !available
  }
)

// The same contract with acks written behind and lease commits durable: both options keep it.
queueContract(
  "postgres (write-behind acks, durable lease commits)",
  () =>
    PostgresQueue.layer({ schema: "rl_contract_wb", writeBehindAcks: true, durableLeaseCommits: true }).pipe(
      Layer.provide(freshDatabaseLayer("contract_wb"))
    ),
  { skip: !available }
)
