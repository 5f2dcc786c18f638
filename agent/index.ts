export { startAgent } from './agent.js';
export type { Agent, AgentOptions, AgentStats } from './agent.js';
export { startAnchorKeeper } from './replication/anchor-keeper.js';
export type { AnchorKeeper, AnchorKeeperOptions } from './replication/anchor-keeper.js';
