/** An array-backed FIFO with O(1) amortised push and shift. */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get size(): number {
    return this.items.length - this.head
  }

  push(value: A): void {
    this.items.push(value)
  }

  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const value = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return value
  }

  *[Symbol.iterator](): IterableIterator<A> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i] as A
  }
}
