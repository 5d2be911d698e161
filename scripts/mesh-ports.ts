// The mesh's documented default ports, shared by mesh:up and mesh:probe.
export const DEFAULT_PORTS = { order: 7401, payment: 7402, inventory: 7403 } as const;
/** Where mesh:dashboard (and mesh:up's dashboard) serves its page. */
export const DEFAULT_DASHBOARD_PORT = 7480;
