/**
 * The datagram a udp_sender sends after its last packet, so the udp_receiver on the other node knows
 * the stream is over and how many packets were sent (loss counted at the end is then exact). Packets
 * are at least 16 bytes, so a 12-byte datagram with this magic cannot be one.
 */
const magic = Buffer.from("CRLEND\0\0", "latin1");

export function udpEndMarker(sent: number): Buffer {
  const marker = Buffer.alloc(12);
  magic.copy(marker, 0);
  marker.writeUInt32BE(sent >>> 0, 8);
  return marker;
}

export function isEndMarker(packet: Buffer): boolean {
  return packet.length === 12 && packet.subarray(0, 8).equals(magic);
}

export function endMarkerCount(packet: Buffer): number {
  return packet.readUInt32BE(8);
}
