/** What a wiring module needs from the sandbox: the simulated platform, its driver and its SMS provider. */
export { createSandbox } from "./sandbox.ts";
export type { Faults, RateLimit, Sandbox, SandboxAccess, SandboxOptions, SmsSettings } from "./sandbox.ts";
export type { SandboxWorld } from "./sandbox-world.ts";
export { createSandboxDriver } from "./sandbox-driver.ts";
export type { SandboxDriverOptions } from "./sandbox-driver.ts";
export { createSandboxSmsProvider } from "./sandbox-sms-provider.ts";
export type { SandboxSmsProvider, SandboxSmsProviderOptions } from "./sandbox-sms-provider.ts";
