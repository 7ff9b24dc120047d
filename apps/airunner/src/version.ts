/** The version printed by `--version` and logged at start (the original prints `dev` unless set at build). */
export const VERSION = "dev"
