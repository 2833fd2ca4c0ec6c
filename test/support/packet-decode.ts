// Ring records of a BPF_PROG_TEST_RUN decoded as capture decodes them: columns (what the writer
// and flow table take) and the same packets as PacketRecords (what tests compare).
import { readPacketColumns } from '../../native/packet-columns-layout.js';
import { packetRecordsOf, type PacketColumns } from '../../model/packet-columns.js';
import type { PacketRecord } from '../../model/records.js';
import { PacketRecordDecoder } from '../../native/addon.js';

export interface DecodedRecords {
  columns: PacketColumns;
  packets: PacketRecord[];
  malformed: number;
}

export function decodeRecords(decoder: PacketRecordDecoder, batch: Buffer, names = { node: 'n', netns: 'test', iface: 'lo' }): DecodedRecords {
  const { columns, malformed } = readPacketColumns(decoder.decode(batch), names.node, {
    netnsName: () => names.netns,
    ifaceName: () => names.iface,
  });
  return { columns, packets: packetRecordsOf(columns), malformed };
}
