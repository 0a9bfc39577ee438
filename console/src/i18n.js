// zh-CN first; English when the browser prefers it (navigator.language). One small table.
import { reactive } from 'vue';

const zh = {
  app: 'mpcrm 管理后台', login: '登录', logout: '退出', username: '用户名', password: '密码',
  loginFailed: '登录失败', sessionExpired: '登录已过期，请重新登录；未保存的内容已保留',
  dashboard: '数据看板', approvals: '审批', leads: '线索', teams: '团队', users: '用户', forms: '表单',
  rules: '分配规则', imports: '导入导出', language: '语言',
  from: '开始日期', to: '结束日期', dateRange: '日期范围', team: '团队', allTeams: '全部团队', refresh: '刷新',
  funnel: '销售漏斗', reps: '销售排行', lifecycle: '客户生命周期', rfm: 'RFM 分层',
  created: '新增线索', conversions: '成交', conversionRate: '转化率', followups: '跟进', visits: '拜访',
  newCustomers: '新客户', intoAtRisk: '转入风险', saved: '挽回', churned: '流失', wonBack: '赢回', customersNow: '当前客户',
  churnRate: '流失率', entered: '进入', stage: '阶段', rep: '销售',
  pending: '待审批', noPending: '没有待审批的合同', contract: '合同', amount: '金额', startDate: '开始', endDate: '结束',
  paymentPlan: '回款计划', dueDate: '到期日', steps: '审批步骤', comment: '意见', approve: '通过', reject: '驳回', return: '退回',
  commentRequired: '驳回或退回需要填写意见', decided: '已处理', lead: '线索', owner: '负责人', notes: '备注', status: '状态',
  search: '搜索', name: '姓名', company: '公司', phone: '手机', tags: '标签', tag: '标签', level: '等级', layer: 'RFM 层',
  all: '全部', timeline: '时间线', reassign: '改派', reassignTo: '改派给', reason: '原因', selected: '已选', open: '查看',
  loadMore: '加载更多', save: '保存', cancel: '取消', create: '新建', edit: '编辑', actions: '操作', active: '启用',
  description: '说明', pool: '公海', claimDailyLimit: '每日领取上限', releaseCooldownDays: '释放冷却天数',
  reclaim: '回收规则', reclaimEnabled: '启用回收', noFollowupDays: '未跟进天数', noConversionDays: '未成交天数',
  warnDaysBefore: '提前提醒天数', role: '角色', capacity: '容量', finance: '可登记回款', deactivate: '停用', activate: '启用',
  bindCode: '绑定码', bindCodeHint: '在小程序登录时输入此绑定码，或扫码', expiresAt: '有效期至', roleRep: '销售', roleManager: '经理', roleAdmin: '管理员',
  handOver: '停用前请把该用户的线索改派给同组其他成员（线索页可批量改派）',
  slug: '链接标识', title: '标题', defaultTags: '默认标签', fields: '字段', addField: '添加字段', key: '字段键', label: '显示名',
  type: '类型', required: '必填', options: '选项', mapsTo: '映射到', preview: '实时预览', shareLink: '分享链接', qrCode: '二维码',
  remove: '删除', up: '上移', down: '下移', optionsHint: '每行一个：值=显示名',
  priority: '优先级', strategy: '策略', members: '成员', weights: '权重', dailyQuota: '每日配额', matchTags: '匹配标签',
  matchSource: '来源表单', workingHours: '工作时间', whoNext: '下一条线索给谁', previewTags: '线索标签', runPreview: '预览',
  matched: '命中', notMatched: '未命中', roundRobin: '轮流分配', weighted: '按权重', leastLoaded: '最少负载',
  importFile: '导入线索文件 (CSV / XLSX)', chooseFile: '选择文件', upload: '上传', progress: '进度', rejectedRows: '被拒绝的行',
  downloadRejected: '下载被拒绝的行', row: '行', field: '字段', message: '原因', exportLeads: '导出线索', merged: '合并', total: '总数',
  saveOk: '已保存', yes: '是', no: '否', none: '无', error: '出错了', nothingHere: '暂无数据', close: '关闭',
  restoredDraft: '已恢复未保存的内容',
};

const en = {
  app: 'mpcrm console', login: 'Log in', logout: 'Log out', username: 'Username', password: 'Password',
  loginFailed: 'Login failed', sessionExpired: 'Your session expired; log in again — what you typed is kept',
  dashboard: 'Dashboard', approvals: 'Approvals', leads: 'Leads', teams: 'Teams', users: 'Users', forms: 'Forms',
  rules: 'Allocation rules', imports: 'Import & export', language: 'Language',
  from: 'From', to: 'To', dateRange: 'Date range', team: 'Team', allTeams: 'All teams', refresh: 'Refresh',
  funnel: 'Funnel', reps: 'Rep leaderboard', lifecycle: 'Lifecycle', rfm: 'RFM layers',
  created: 'New leads', conversions: 'Conversions', conversionRate: 'Conversion rate', followups: 'Follow-ups', visits: 'Visits',
  newCustomers: 'New customers', intoAtRisk: 'Into at risk', saved: 'Saved', churned: 'Churned', wonBack: 'Won back', customersNow: 'Customers now',
  churnRate: 'Churn rate', entered: 'Entered', stage: 'Stage', rep: 'Rep',
  pending: 'Pending approval', noPending: 'No contracts waiting for you', contract: 'Contract', amount: 'Amount', startDate: 'Start', endDate: 'End',
  paymentPlan: 'Payment plan', dueDate: 'Due', steps: 'Approval steps', comment: 'Comment', approve: 'Approve', reject: 'Reject', return: 'Return',
  commentRequired: 'Reject and return need a comment', decided: 'Done', lead: 'Lead', owner: 'Owner', notes: 'Notes', status: 'Status',
  search: 'Search', name: 'Name', company: 'Company', phone: 'Phone', tags: 'Tags', tag: 'Tag', level: 'Level', layer: 'RFM layer',
  all: 'All', timeline: 'Timeline', reassign: 'Reassign', reassignTo: 'Reassign to', reason: 'Reason', selected: 'Selected', open: 'Open',
  loadMore: 'Load more', save: 'Save', cancel: 'Cancel', create: 'New', edit: 'Edit', actions: 'Actions', active: 'Active',
  description: 'Description', pool: 'Public pool', claimDailyLimit: 'Claims per day', releaseCooldownDays: 'Release cool-down (days)',
  reclaim: 'Reclaim', reclaimEnabled: 'Reclaim idle leads', noFollowupDays: 'Days without follow-up', noConversionDays: 'Days without conversion',
  warnDaysBefore: 'Warn days before', role: 'Role', capacity: 'Capacity', finance: 'May record payments', deactivate: 'Deactivate', activate: 'Activate',
  bindCode: 'Bind code', bindCodeHint: 'Type this code when logging in to the mini-program, or scan it', expiresAt: 'Expires', roleRep: 'Rep', roleManager: 'Manager', roleAdmin: 'Admin',
  handOver: 'Before deactivating, reassign their leads to another member (Leads page, many at once)',
  slug: 'Slug', title: 'Title', defaultTags: 'Default tags', fields: 'Fields', addField: 'Add field', key: 'Key', label: 'Label',
  type: 'Type', required: 'Required', options: 'Options', mapsTo: 'Maps to', preview: 'Live preview', shareLink: 'Share link', qrCode: 'QR code',
  remove: 'Remove', up: 'Up', down: 'Down', optionsHint: 'One per line: value=label',
  priority: 'Priority', strategy: 'Strategy', members: 'Members', weights: 'Weights', dailyQuota: 'Daily quota', matchTags: 'Match tags',
  matchSource: 'Source form', workingHours: 'Working hours', whoNext: 'Who would get this lead next', previewTags: 'Lead tags', runPreview: 'Preview',
  matched: 'Matched', notMatched: 'Not matched', roundRobin: 'Round robin', weighted: 'Weighted', leastLoaded: 'Least loaded',
  importFile: 'Import leads (CSV / XLSX)', chooseFile: 'Choose file', upload: 'Upload', progress: 'Progress', rejectedRows: 'Rejected rows',
  downloadRejected: 'Download rejected rows', row: 'Row', field: 'Field', message: 'Reason', exportLeads: 'Export leads', merged: 'Merged', total: 'Total',
  saveOk: 'Saved', yes: 'Yes', no: 'No', none: 'None', error: 'Something went wrong', nothingHere: 'Nothing here yet', close: 'Close',
  restoredDraft: 'Restored what you had typed',
};

export const lang = (navigator.language || 'zh-CN').toLowerCase().startsWith('en') ? 'en' : 'zh-CN';
const table = lang === 'en' ? en : zh;
export const i18n = reactive({ lang });
export function t(key) { return table[key] ?? zh[key] ?? key; }
export const messages = { zh, en };
