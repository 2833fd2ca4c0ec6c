// nettrail's Wireshark configuration profile: columns for the capture point, packet id and
// nettrail's comments, coloring rules on those comments' fixed words, and Wireshark's own TCP
// sequence analysis turned off (it takes a packet's copy at its next capture point for a
// retransmission; nettrail's comments say what happened at each point). Installed as
// ~/.config/wireshark/profiles/nettrail (docs/pcap.md).
import { writeZip } from '../pcap/zip.js';
import { DROP_COMMENT } from './capture-file.js';
import { ANALYSIS_COMMENT } from './packet-analysis.js';

export const WIRESHARK_PROFILE_NAME = 'nettrail';

/** Columns: title and Wireshark's format (%Cus:FIELD:OCCURRENCE:R for a field). */
const COLUMNS: ReadonlyArray<[string, string]> = [
  ['No.', '%m'],
  ['Time', '%t'],
  ['Capture point', '%Cus:frame.interface_name:0:R'],
  ['Packet id', '%Cus:frame.packet_id:0:R'],
  ['Source', '%s'],
  ['Destination', '%d'],
  ['Protocol', '%p'],
  ['Length', '%L'],
  // Filtered on one packet id, the time from the row above is the packet's delay over that hop.
  ['Delta shown', '%Cus:frame.time_delta_displayed:0:R'],
  ['nettrail', '%Cus:frame.comment:0:R'],
  ['Info', '%i'],
];

/** Coloring rules, the first that matches wins: name, display filter, foreground and background (16-bit RGB). */
const COLORS: ReadonlyArray<[string, string, [number, number, number], [number, number, number]]> = [
  ['nettrail: lost (dropped by the kernel)', `frame.comment contains "${DROP_COMMENT}"`, [65535, 65535, 65535], [45000, 0, 0]],
  ['nettrail: retransmission', `frame.comment contains "${ANALYSIS_COMMENT.retransmission}"`, [0, 0, 0], [65535, 36000, 36000]],
  [
    'nettrail: out-of-order, dup ack, zero window, window full',
    `frame.comment contains "${ANALYSIS_COMMENT.outOfOrder}" || frame.comment contains "${ANALYSIS_COMMENT.dupAck}" || ` +
      `frame.comment contains "${ANALYSIS_COMMENT.zeroWindow}" || frame.comment contains "${ANALYSIS_COMMENT.windowFull}"`,
    [0, 0, 0], [65535, 57000, 30000],
  ],
  ['nettrail: NAT hop', 'frame.comment matches "^(SNAT|DNAT|FULLNAT) via "', [0, 0, 0], [36000, 52000, 65535]],
  ['nettrail: copy of a packet seen at an earlier point', `frame.comment contains "${ANALYSIS_COMMENT.hop}"`, [30000, 30000, 30000], [62000, 62000, 62000]],
];

/** The profile's files, by their names in the profile's directory. */
export function wiresharkProfileFiles(): Array<{ name: string; text: string }> {
  const columns = COLUMNS.map(([title, format]) => `\t"${title}", "${format}"`).join(',\n');
  const preferences = [
    '# nettrail\'s Wireshark profile (`nettrail wireshark-profile`, docs/pcap.md).',
    '# Wireshark\'s TCP sequence analysis runs over all the capture points of a file as one;',
    '# nettrail\'s comments ("nettrail: retransmission ...") give it per point instead.',
    'tcp.analyze_sequence_numbers: FALSE',
    '',
    'gui.column.format:',
    columns,
    '',
  ].join('\n');
  const rgb = ([r, g, b]: [number, number, number]) => `[${r},${g},${b}]`;
  const colorfilters = [
    '# nettrail\'s coloring rules: on the words nettrail\'s comments begin with (docs/pcap.md)',
    ...COLORS.map(([name, filter, fg, bg]) => `@${name}@${filter}@${rgb(fg)}${rgb(bg)}`),
    '',
  ].join('\n');
  return [
    { name: 'preferences', text: preferences },
    { name: 'colorfilters', text: colorfilters },
  ];
}

/** The profile as a zip of the directory nettrail/ (unzip it in ~/.config/wireshark/profiles/). */
export function wiresharkProfileZip(): AsyncGenerator<Buffer, void, undefined> {
  return writeZip(wiresharkProfileFiles().map(({ name, text }) => ({ name: `${WIRESHARK_PROFILE_NAME}/${name}`, data: [Buffer.from(text, 'utf8')] })));
}
