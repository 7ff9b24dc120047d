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
