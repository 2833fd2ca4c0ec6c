// Packet ids in the API: 16 hex digits, the same in PACKET and DROP, so a drop
// is found among the packets seen before it.

export const packetIdJson = (id: bigint): string => id.toString(16).padStart(16, '0');
