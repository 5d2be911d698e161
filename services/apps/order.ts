// The order service, the mesh's entry point: reserve stock, then charge; if the charge
// fails, release the reservation, so no outcome leaves a charge without goods or
// goods locked without a charge.
import { HttpError, type Route } from "../mesh/server.ts";
import { UpstreamError, type Upstreams } from "../mesh/client.ts";
import { field } from "../mesh/validate.ts";
import type { MeshLogger } from "../mesh/log.ts";

export function orderRoutes(up: Upstreams, log: MeshLogger): Route[] {
  let next = 1;
  return [
    {
      method: "POST",
      path: "/orders",
      handle: async ({ body }) => {
        const sku = field(body, "sku", "string");
        const quantity = field(body, "quantity", "quantity");
        const orderId = `ord-${process.pid}-${next++}`;

        // Reserve first: a reservation is cheap to undo, a charge is not (refunds reach the customer).
        const reserved = await upstream("inventory", () =>
          up.call("inventory", "POST", "/reserve", { orderId, sku, quantity }),
        );
        if (reserved.status !== 201) {
          throw new HttpError(reserved.status === 404 ? 404 : 409, {
            error: "not_reserved",
            orderId,
            inventory: reserved.body,
          });
        }
        const r = reserved.body as { reservationId: string; unitPrice: number };
        const amount = r.unitPrice * quantity;

        let charged: { status: number; body: unknown } | undefined;
        let failure: HttpError | undefined;
        try {
          charged = await up.call("payment", "POST", "/charge", { orderId, amount });
          if (charged.status !== 201 && charged.status !== 200)
            failure = new HttpError(402, { error: "payment_declined", orderId, payment: charged.body });
        } catch (e) {
          failure = toHttp("payment", e);
        }
        if (failure) {
          const released = await up.call("inventory", "POST", "/release", { reservationId: r.reservationId }).then(
            () => true,
            () => false,
          );
          if (!released)
            log.error(
              {
                event: "upstream.failed",
                upstream: "inventory",
                reason: "release_failed",
                reservationId: r.reservationId,
                orderId,
              },
              `reservation ${r.reservationId} of order ${orderId} could not be released after the charge failed; release it by hand`,
            );
          throw new HttpError(failure.status, { ...failure.body, reservationReleased: released });
        }
        return {
          status: 201,
          body: { orderId, sku, quantity, amount, reservation: reserved.body, charge: charged!.body },
        };
      },
    },
    {
      method: "GET",
      path: "/healthz",
      handle: ({ peer }) => ({ status: 200, body: { service: "order", caller: peer.name } }),
    },
  ];
}

async function upstream<T>(name: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toHttp(name, e);
  }
}

/** 502 for a callee that could not be reached or refused us; 504 for one too slow. */
function toHttp(name: string, e: unknown): HttpError {
  if (e instanceof UpstreamError) {
    return new HttpError(e.reason === "timeout" ? 504 : 502, {
      error: `${name}_unavailable`,
      upstream: name,
      reason: e.reason,
      message: e.message,
    });
  }
  return new HttpError(502, { error: `${name}_unavailable`, upstream: name, reason: "network" });
}
