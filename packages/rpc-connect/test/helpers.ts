import { generateKeyPairSync, type KeyObject } from "node:crypto"
import { MemoryEventLog } from "@runlane/core"
import { makeMemoryQueue } from "@runlane/queue-memory"
import {
  type AirunnerServicesOptions,
  createAirunnerClients,
  JwtVerifier,
  makeAirunnerServices,
  parsePublicKey,
  type RunningServer,
  signToken,
  startAirunnerServer
} from "../src/index.ts"

export interface Harness {
  readonly server: RunningServer
  readonly privateKey: KeyObject
  readonly publicPem: string
  readonly token: string
  readonly clients: ReturnType<typeof createAirunnerClients>
  readonly services: ReturnType<typeof makeAirunnerServices>
}

export const makeKeys = () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
  return {
    privateKey,
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privatePem: privateKey.export({ type: "sec1", format: "pem" }).toString()
  }
}

export const startHarness = async (
  options: { readonly auth?: boolean; readonly services?: AirunnerServicesOptions } = {}
): Promise<Harness> => {
  const { privateKey, publicPem } = makeKeys()
  const queue = makeMemoryQueue()
  const services = makeAirunnerServices(queue, MemoryEventLog.makeMemoryEventLog(), options.services)
  const server = await startAirunnerServer({
    services,
    listen: "127.0.0.1:0",
    auth: options.auth === false ? undefined : new JwtVerifier(parsePublicKey(publicPem))
  })
  const token = signToken(privateKey, "tester", 3600)
  const clients = createAirunnerClients({ baseUrl: server.url, token, ca: server.certPem })
  return { server, privateKey, publicPem, token, clients, services }
}
