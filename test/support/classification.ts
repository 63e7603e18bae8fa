// classifyAddress with its answer typed for the assertions, which read the fields of either
// kind: a field the kind has not (`reason` of a routable address) reads undefined.

import { type Classification, classifyAddress, type Family, type FilterPolicy } from '../../lib/classify'

export type ClassificationView = Classification & {
  address?: string
  family?: Family
  allowedBy?: string
  reason?: string
}

export const classify = (text: string, policy?: FilterPolicy): ClassificationView =>
  classifyAddress(text, policy)
