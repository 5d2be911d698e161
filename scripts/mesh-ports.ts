// The mesh's documented default ports, shared by mesh:up and mesh:probe.
export const DEFAULT_PORTS = { order: 7401, payment: 7402, inventory: 7403 } as const;
