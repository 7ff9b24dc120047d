import { Deferred, Effect, Exit, Queue, type Scope } from "effect"

/**
 * Gathers single calls into batches run by one statement each ("smart batching"): a worker
 * takes whatever is waiting (up to `maxBatch`), optionally lingers `lingerMs` for more, runs
 * the batch and answers each caller. While a batch runs, new calls pile up for the next one,
 * so an idle system adds no latency and a busy one sends few large statements.
 */
export interface Batcher<I, O, E> {
  readonly submit: (input: I) => Effect.Effect<O, E>
  /** Adds an item without waiting for it; `onDone` gets its result (called synchronously). */
  readonly fire: (input: I, onDone: (exit: Exit.Exit<O, E>) => void) => void
}

export interface BatcherOptions<I, O, E> {
  /** Most items per batch. */
  readonly maxBatch: number
  /** Extra wait for more items after the first one arrives (0 = none). */
  readonly lingerMs: number
  /** How many batches may run at once. */
  readonly concurrency: number
  /** Runs one batch; answers one result per input, in input order. */
  readonly run: (inputs: ReadonlyArray<I>) => Effect.Effect<ReadonlyArray<Exit.Exit<O, E>>, E>
  /** The error given to calls still waiting when the batcher's scope closes. */
  readonly closed: () => E
}

interface Item<I, O, E> {
  readonly input: I
  readonly deferred?: Deferred.Deferred<O, E>
  readonly onDone?: (exit: Exit.Exit<O, E>) => void
}

const settle = <I, O, E>(item: Item<I, O, E>, exit: Exit.Exit<O, E>) => {
  if (item.deferred !== undefined) Deferred.doneUnsafe(item.deferred, exit)
  item.onDone?.(exit)
}

export const makeBatcher = <I, O, E>(
  options: BatcherOptions<I, O, E>
): Effect.Effect<Batcher<I, O, E>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<Item<I, O, E>>()

    const answer = (items: ReadonlyArray<Item<I, O, E>>, exit: Exit.Exit<ReadonlyArray<Exit.Exit<O, E>>, E>) => {
      if (Exit.isSuccess(exit)) {
        items.forEach((item, i) => {
          settle(item, exit.value[i] ?? Exit.fail(options.closed()))
        })
      } else {
        for (const item of items) settle(item, Exit.failCause(exit.cause))
      }
    }

    const runBatch = (items: ReadonlyArray<Item<I, O, E>>) =>
      options.run(items.map((item) => item.input)).pipe(
        Effect.exit,
        Effect.flatMap((exit) => {
          answer(items, exit)
          return Effect.void
        }),
        // A batch that started finishes even when the scope closes: its callers get answers.
        Effect.uninterruptible
      )

    const worker = Effect.gen(function* () {
      while (true) {
        let items = yield* Queue.takeBetween(queue, 1, options.maxBatch)
        if (options.lingerMs > 0 && items.length < options.maxBatch) {
          yield* Effect.sleep(options.lingerMs)
          const more = yield* Queue.takeBetween(queue, 0, options.maxBatch - items.length)
          if (more.length > 0) items = items.concat(more)
        }
        yield* runBatch(items)
      }
    })

    for (let i = 0; i < Math.max(1, options.concurrency); i++) yield* Effect.forkScoped(worker)

    yield* Effect.addFinalizer(() =>
      Queue.clear(queue).pipe(
        Effect.flatMap((left) => {
          for (const item of left) settle(item, Exit.fail(options.closed()))
          return Effect.void
        }),
        Effect.ignore
      )
    )

    const submit = (input: I): Effect.Effect<O, E> =>
      Effect.suspend(() => {
        const deferred = Deferred.makeUnsafe<O, E>()
        Queue.offerUnsafe(queue, { input, deferred })
        return Deferred.await(deferred)
      })

    const fire = (input: I, onDone: (exit: Exit.Exit<O, E>) => void): void => {
      Queue.offerUnsafe(queue, { input, onDone })
    }

    return { submit, fire }
  })
