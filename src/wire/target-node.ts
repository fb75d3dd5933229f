/**
 * The request header that names the node a per-node call is for (id or name); absent: the controller's
 * own. Pi-Controller's NodeAgent has no node field, so clients say it here and the controller relays.
 */
export const targetNodeHeader = "corral-node";
