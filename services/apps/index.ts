// The in-process apps a mesh process can host: one line each. Only the entry point
// (services/main.ts) reads this; the runtime (services/mesh/) imports no app.
import { routesApp, type App } from "../mesh/app.ts";
import { orderRoutes } from "./order.ts";
import { paymentRoutes } from "./payment.ts";
import { inventoryRoutes } from "./inventory.ts";

export const APPS: Readonly<Record<string, App>> = {
  order: routesApp(({ upstreams, log }) => orderRoutes(upstreams, log)),
  payment: routesApp(() => paymentRoutes()),
  inventory: routesApp(() => inventoryRoutes()),
};

export function appNamed(name: string): App | undefined {
  return Object.hasOwn(APPS, name) ? APPS[name] : undefined;
}
