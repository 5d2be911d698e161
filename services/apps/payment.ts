// The payment service: charges, in memory, idempotent per order.
import { HttpError, type Route } from "../mesh/server.ts";
import { field } from "../mesh/validate.ts";

/** Charges above this are declined, so the demo can show a failed charge being rolled back. */
export const DECLINE_ABOVE_CENTS = 100_000;

export function paymentRoutes(): Route[] {
  const charges = new Map<string, { chargeId: string; orderId: string; amount: number; caller: string }>();
  let next = 1;
  return [
    {
      method: "POST",
      path: "/charge",
      handle: ({ body, peer }) => {
        const orderId = field(body, "orderId", "string");
        const amount = field(body, "amount", "cents");
        // A retried charge for the same order must not charge twice.
        const seen = charges.get(orderId);
        if (seen) {
          if (seen.amount !== amount)
            throw new HttpError(409, { error: "conflicting_charge", orderId, charged: seen.amount });
          return { status: 200, body: { ...seen, status: "captured", repeated: true } };
        }
        if (amount > DECLINE_ABOVE_CENTS)
          throw new HttpError(402, { error: "declined", orderId, amount, limit: DECLINE_ABOVE_CENTS });
        const c = { chargeId: `ch-${next++}`, orderId, amount, caller: peer.name };
        charges.set(orderId, c);
        return { status: 201, body: { ...c, status: "captured" } };
      },
    },
    {
      method: "GET",
      path: "/healthz",
      handle: ({ peer }) => ({ status: 200, body: { service: "payment", caller: peer.name } }),
    },
  ];
}
