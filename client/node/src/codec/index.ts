// The codec of docs/protocol.md: pure and bounded, no I/O. Exported whole as `codec` for
// tools and tests (a fake server in a test speaks through it too).
export * from './frame';
export * from './messages';
export * from './ops';
export { Infer, Type } from './schema';
export { CodecError, Reader, Writer } from './wire';
