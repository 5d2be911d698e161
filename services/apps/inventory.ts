// The inventory service: stock levels and reservations, in memory.
import { HttpError, type Route } from "../mesh/server.ts";
import { field } from "../mesh/validate.ts";

interface Reservation {
  readonly id: string;
  readonly orderId: string;
  readonly sku: string;
  readonly quantity: number;
  released: boolean;
}

/** Demo catalogue; prices in cents. */
const CATALOGUE: Record<string, { stock: number; unitPrice: number }> = {
  widget: { stock: 100, unitPrice: 250 },
  gadget: { stock: 20, unitPrice: 1999 },
  gizmo: { stock: 0, unitPrice: 4999 },
  piano: { stock: 5, unitPrice: 250_000 }, // above payment's decline limit: shows the rollback
};

/**
 * MESH_INVENTORY_STOCK="widget=100000,gadget=5" overrides starting stock, so a long
 * demo or the rotation drill does not run out of widgets halfway.
 */
function stockOverrides(env = process.env.MESH_INVENTORY_STOCK): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of (env ?? "").split(",").filter(Boolean)) {
    const m = /^([a-z]+)=(\d{1,12})$/.exec(part.trim());
    if (!m || !CATALOGUE[m[1]!])
      throw new Error(
        `MESH_INVENTORY_STOCK: "${part}" is not sku=count for a known sku (${Object.keys(CATALOGUE).join(", ")})`,
      );
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

export function inventoryRoutes(): Route[] {
  const overrides = stockOverrides();
  const stock = new Map(
    Object.entries(CATALOGUE).map(([sku, v]) => [sku, { ...v, stock: overrides.get(sku) ?? v.stock }]),
  );
  const reservations = new Map<string, Reservation>();
  let next = 1;
  const item = (sku: string) => {
    const s = stock.get(sku);
    if (!s) throw new HttpError(404, { error: "unknown_sku", sku });
    return s;
  };
  return [
    {
      method: "GET",
      path: "/stock/:sku",
      handle: ({ params }) => {
        const s = item(params.sku ?? "");
        return { status: 200, body: { sku: params.sku, available: s.stock, unitPrice: s.unitPrice } };
      },
    },
    {
      method: "POST",
      path: "/reserve",
      handle: ({ body }) => {
        const orderId = field(body, "orderId", "string");
        const sku = field(body, "sku", "string");
        const quantity = field(body, "quantity", "quantity");
        const s = item(sku);
        if (s.stock < quantity)
          throw new HttpError(409, { error: "out_of_stock", sku, available: s.stock, requested: quantity });
        s.stock -= quantity;
        const r: Reservation = { id: `res-${next++}`, orderId, sku, quantity, released: false };
        reservations.set(r.id, r);
        return {
          status: 201,
          body: { reservationId: r.id, sku, quantity, unitPrice: s.unitPrice, remaining: s.stock },
        };
      },
    },
    {
      method: "POST",
      path: "/release",
      handle: ({ body }) => {
        const id = field(body, "reservationId", "string");
        const r = reservations.get(id);
        if (!r) throw new HttpError(404, { error: "unknown_reservation", reservationId: id });
        // Releasing twice must not put the stock back twice: the caller may retry.
        if (!r.released) {
          r.released = true;
          item(r.sku).stock += r.quantity;
        }
        return { status: 200, body: { reservationId: id, released: true } };
      },
    },
    {
      method: "GET",
      path: "/healthz",
      handle: ({ peer }) => ({ status: 200, body: { service: "inventory", caller: peer.name } }),
    },
  ];
}
