/** A binary min-heap ordered by a numeric key; used for delayed jobs and lease expiries. */
export class MinHeap<A> {
  private readonly keys: Array<number> = []
  private readonly values: Array<A> = []

  get size(): number {
    return this.keys.length
  }

  peekKey(): number | undefined {
    return this.keys[0]
  }

  push(key: number, value: A): void {
    const keys = this.keys
    const values = this.values
    let i = keys.length
    keys.push(key)
    values.push(value)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (keys[parent]! <= key) break
      keys[i] = keys[parent]!
      values[i] = values[parent]!
      i = parent
    }
    keys[i] = key
    values[i] = value
  }

  pop(): A | undefined {
    const keys = this.keys
    const values = this.values
    if (keys.length === 0) return undefined
    const top = values[0]
    const lastKey = keys.pop()!
    const lastValue = values.pop()!
    const n = keys.length
    if (n > 0) {
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        if (left >= n) break
        const right = left + 1
        const child = right < n && keys[right]! < keys[left]! ? right : left
        if (keys[child]! >= lastKey) break
        keys[i] = keys[child]!
        values[i] = values[child]!
        i = child
      }
      keys[i] = lastKey
      values[i] = lastValue
    }
    return top
  }
}
