import { JwtKeyError, parsePrivateKey, signToken } from "@runlane/rpc-connect"
import { Config, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { CommandFailed, UsageError } from "../errors.ts"
import { parseGoDuration } from "../goDuration.ts"

/** `token`: an ES256 JWT for the server, printed with a newline and nothing else. */
export const tokenCommand = Command.make(
  "token",
  {
    subject: Flag.String("subject").pipe(Flag.withDescription("Subject (sub claim) for the token.")),
    ttl: Flag.String("ttl").pipe(Flag.withDescription("Token time-to-live."), Flag.withDefault("1h")),
    signingKey: Flag.String("signing-key").pipe(
      Flag.withDescription("PEM-encoded ECDSA private key ($JWT_SIGNING_KEY)."),
      Flag.withFallbackConfig(Config.String("JWT_SIGNING_KEY"))
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const ttlMs = parseGoDuration(flags.ttl)
      if (ttlMs === undefined) return yield* new UsageError({ message: `--ttl: invalid duration "${flags.ttl}"` })
      let key: ReturnType<typeof parsePrivateKey>
      try {
        key = parsePrivateKey(flags.signingKey)
      } catch (error) {
        return yield* new CommandFailed({ message: error instanceof JwtKeyError ? error.message : String(error) })
      }
      const token = signToken(key, flags.subject, Math.floor(ttlMs / 1000))
      yield* Effect.sync(() => process.stdout.write(`${token}\n`))
    })
).pipe(Command.withDescription("Generate a JWT token."))
