export { startAgent } from './agent.js';
export type { Agent, AgentOptions, AgentStats } from './agent.js';
