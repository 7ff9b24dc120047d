export {
  decryptToken,
  decryptTokenSync,
  encryptToken,
  InvalidEncryptionKey,
  KEY_FORM_MESSAGE,
  KEY_REQUIRED_MESSAGE,
  maskInString,
  maskToken,
  parseKey,
  parseKeyOrUndefined,
  parseKeySync,
  TokenDecryptError
} from "./TokenCrypto.ts"
